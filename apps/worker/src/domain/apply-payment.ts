import { PAYMENT_REVIEW_OUTCOMES, type PaymentFacts, type PaymentOutcome, type PaymentResult } from "@wpn/db";
import { runApplyStatement } from "./run-statement.ts";

export function isPaymentReview(outcome: PaymentOutcome): boolean {
  return PAYMENT_REVIEW_OUTCOMES.has(outcome);
}

/**
 * Applies a successful payment: NOTPAY → SUCCESS with the stock of every item taken, or PAYMENT_REVIEW with
 * the reason, or nothing when it was applied before. Exactly once per transaction whatever the number of
 * deliveries, jobs or concurrent workers (see applyPaymentStatement in @wpn/db).
 *
 * Stock is all-or-nothing per order: when any item lacks stock, none is taken, the order is still recorded
 * as paid (transaction id, time, payer) and goes to PAYMENT_REVIEW / OUT_OF_STOCK for a human to fulfil
 * later or refund. Taking part of an order's stock would reserve goods for an order that cannot ship.
 *
 * `commit` applies one payment (in the worker: PaymentBatcher.apply, which shares one statement with the
 * payments of concurrent jobs); a STALE answer commits it again.
 *
 * Throws WorkerError ORDER_NOT_FOUND (retried within the unknown-order window: the checkout may commit the
 * order after WeChat's notification arrives), NOTIFICATION_NOT_FOUND (permanent), ORDER_CONTENDED.
 */
export function applyPayment(
  commit: (facts: PaymentFacts) => Promise<PaymentResult>,
  facts: PaymentFacts,
): Promise<PaymentResult> {
  return runApplyStatement(() => commit(facts), facts);
}
