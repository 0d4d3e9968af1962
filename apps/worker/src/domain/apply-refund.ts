import type { RefundFacts, RefundOutcome, RefundResultRow } from "@wpn/db";
import { WorkerError } from "../errors.ts";
import { runApplyStatement } from "./run-statement.ts";

const REVIEW_OUTCOMES: ReadonlySet<RefundOutcome> = new Set([
  "TRANSACTION_MISMATCH",
  "REFUND_CONFLICT",
  "REFUND_ID_CONFLICT",
  "REFUND_AMOUNT_MISMATCH",
  "DUPLICATE_PAYMENT_REFUNDED",
  "RESTOCK_OUT_OF_RANGE",
  "REFUND_ABNORMAL",
  "REFUND_CLOSED",
]);

export function isRefundReview(outcome: RefundOutcome): boolean {
  return REVIEW_OUTCOMES.has(outcome);
}

/**
 * Applies a refund result. SUCCESS: one Refund row per (order, out_refund_no), refundedTotal adds up
 * partial refunds, the order becomes REFUND when they reach its total (one in review for a second charge not refunded
 * yet, DUPLICATE_PAYMENT, stays in review until that refund, then REFUND), and with `restockOnFullRefund`
 * (REFUND_RESTOCK_POLICY=full) that full refund returns exactly the stock the payment took (movement reason
 * REFUND; an order whose payment took no stock, e.g. OUT_OF_STOCK, returns none) — or, when that would take a SKU's
 * stock past 2^31-1, returns none and is RESTOCK_OUT_OF_RANGE (counted all the same, review). A refund that names another
 * order total or would take refundedTotal above it is recorded but not counted (REFUND_AMOUNT_MISMATCH, review), and
 * so is the refund of a second charge the order's payment review asked for (DUPLICATE_PAYMENT_REFUNDED, review; the one
 * that completes the refunds of every second charge takes the order out of its DUPLICATE_PAYMENT review: SUCCESS, or
 * REFUND when the payment it kept was refunded in full meanwhile).
 * ABNORMAL / CLOSED: the Refund row records the status, the notification is flagged REVIEW, no money or stock
 * changes — on a paid order only, as below.
 *
 * Out-of-order delivery: a refund for an order whose payment has not been applied yet — successful, ABNORMAL or
 * CLOSED: its transaction cannot be compared with the order's before — throws ORDER_NOT_PAID and is retried with
 * backoff (within the unknown-order window) until the payment lands, so the end state is the one of in-order delivery;
 * past the window it is dead-lettered with the code, whatever its status (nothing recorded; `replay` once the payment
 * is applied). A refund naming a transaction that is neither the order's nor a second charge recorded for it waits
 * the same way (TRANSACTION_NOT_SEEN): the refund of a second charge can be delivered before that charge's payment
 * (DUPLICATE_PAYMENT). Once the window is over (`windowOver`, StageContext.windowOver) the statement runs again
 * without waiting and decides TRANSACTION_MISMATCH (REVIEW) — a verdict, not a dead letter. A transaction the database
 * already shows to be another order's is TRANSACTION_MISMATCH at the first run, paid order or not (the statement's
 * `elsewhere`): no payment still to come can make it this order's.
 *
 * A refund whose transaction is another sub-merchant's of the same merchant (SUB_MCHID_MISMATCH: an APIv2 refund's
 * outer sub_mch_id is not signed, so a genuine refund resent under another sub-merchant's id decrypts fine) is
 * refused for good, writing nothing on any order.
 *
 * `commit` applies the refund in one statement of its own (ApplyStore.refund).
 */
export async function applyRefund(
  commit: (facts: RefundFacts) => Promise<RefundResultRow>,
  facts: RefundFacts,
  windowOver: () => Promise<boolean>,
): Promise<RefundResultRow> {
  const waiting = await run(commit, { ...facts, waitForTransaction: true });
  // The window is judged only for the few refunds whose transaction is unknown (it may read Redis).
  if (waiting.outcome !== "TRANSACTION_NOT_SEEN") return waiting;
  if (!(await windowOver())) {
    throw WorkerError.of(
      "TRANSACTION_NOT_SEEN",
      `refund ${facts.outRefundNo} names transaction ${facts.transactionId}, neither the one of ${facts.outTradeNo} ` +
        "nor a second charge of it recorded yet",
    );
  }
  return run(commit, { ...facts, waitForTransaction: false });
}

/**
 * One run of the refund statement (runApplyStatement): ORDER_NOT_PAID thrown as the window fault it is,
 * SUB_MCHID_MISMATCH as the permanent refusal it is (nothing was written; dead-lettered with the code).
 */
function run(commit: (facts: RefundFacts) => Promise<RefundResultRow>, facts: RefundFacts): Promise<RefundResultRow> {
  return runApplyStatement(
    () => commit(facts),
    facts,
    (result) => {
      if (result.outcome === "ORDER_NOT_PAID") {
        return WorkerError.of(
          "ORDER_NOT_PAID",
          `refund ${facts.outRefundNo} arrived before the payment of ${facts.outTradeNo}`,
        );
      }
      if (result.outcome === "SUB_MCHID_MISMATCH") {
        return WorkerError.of(
          "SUB_MCHID_MISMATCH",
          `refund ${facts.outRefundNo} of ${facts.outTradeNo} names sub-merchant ${facts.subMchid ?? "(none)"}, but ` +
            `transaction ${facts.transactionId} is another sub-merchant's of ${facts.mchid}: nothing recorded`,
        );
      }
      return undefined;
    },
  );
}
