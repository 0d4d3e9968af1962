import type { PaymentFacts, PaymentResult } from "@wpn/db";
import { GroupCommit } from "./group-commit.ts";

export interface PaymentBatcherOptions {
  /** Applies a batch of payments in one statement, results in input order: `ApplyStore.payments`. */
  payments(facts: readonly PaymentFacts[]): Promise<PaymentResult[]>;
  /** Largest batch. */
  maxBatchSize: number;
  /** Batches being applied at once; each holds a pooled connection for its statement. */
  maxInFlight: number;
  /** Told the size of every batch sent, one-at-a-time retries included: one call per statement (a metric). */
  onFlush?(size: number): void;
}

/**
 * Group commit for the payments of the apply stage (scheduling, failures and the one-by-one fallback:
 * GroupCommit). Concurrent apply jobs of one process each open their notification on their own, then `apply`
 * its payment; the payments waiting at that moment are applied together by ONE `payments` statement, with the
 * semantics of applying them one after another in submit order, and each job gets its own payment's result.
 *
 * A batch may hold the same notification id or out_trade_no twice (a re-run job next to its first run, two
 * notifications of one transaction): the later one sees the earlier one's effect (ALREADY, DUPLICATE), exactly
 * as if the two jobs had run one after the other.
 *
 * A failed statement fails every payment of its batch with its error: a transient one (connection lost,
 * deadlock, serialization failure, a transaction id another batch committed on another order while this statement
 * ran — the retry answers TRANSACTION_CONFLICT) is retried by the queue, and the statement is all-or-nothing, so
 * nothing of the batch was applied; a permanent one (PostgreSQL refused some payment's data) makes the batch be
 * applied again one payment at a time, so only the payments at fault fail.
 */
export class PaymentBatcher {
  readonly #batches: GroupCommit<PaymentFacts, PaymentResult>;

  constructor(options: PaymentBatcherOptions) {
    this.#batches = new GroupCommit<PaymentFacts, PaymentResult>({
      commit: (batch) => options.payments(batch),
      maxBatchSize: options.maxBatchSize,
      maxInFlight: options.maxInFlight,
      ...(options.onFlush ? { onFlush: options.onFlush } : {}),
    });
  }

  /** Applies one payment as part of the next batch; resolves with its own result (STALE included: run it again). */
  apply(facts: PaymentFacts): Promise<PaymentResult> {
    return this.#batches.submit(facts);
  }
}
