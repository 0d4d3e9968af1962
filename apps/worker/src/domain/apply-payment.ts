import type { PaymentFacts, PaymentOutcome, PaymentResult } from "@wpn/db";
import { WorkerError } from "../errors.ts";
import type { ApplyStore } from "./store.ts";

/**
 * How often a STALE answer (the order changed between the statement's snapshot and its row lock, i.e. a
 * concurrent notification for the same order committed just before) is retried on the spot. One retry
 * almost always suffices; a persistently contended order falls back to the queue's backoff.
 */
const STALE_RETRIES = 5;

/** Outcomes that put the order (or at least the notification) in front of a human. */
const REVIEW_OUTCOMES: ReadonlySet<PaymentOutcome> = new Set([
  "DUPLICATE_PAYMENT",
  "PAID_AFTER_CLOSE",
  "UNEXPECTED_ORDER_STATUS",
  "MCHID_MISMATCH",
  "APPID_MISMATCH",
  "CURRENCY_MISMATCH",
  "AMOUNT_MISMATCH",
  "OUT_OF_STOCK",
]);

export function isPaymentReview(outcome: PaymentOutcome): boolean {
  return REVIEW_OUTCOMES.has(outcome);
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
 * Throws WorkerError ORDER_NOT_FOUND (retried within the unknown-order window: the checkout may commit the
 * order after WeChat's notification arrives), NOTIFICATION_NOT_FOUND (permanent), ORDER_CONTENDED.
 */
export async function applyPayment(store: ApplyStore, facts: PaymentFacts): Promise<PaymentResult> {
  for (let attempt = 0; attempt < STALE_RETRIES; attempt++) {
    const result = await store.payment(facts);
    if (result.outcome === "STALE") continue;
    if (result.outcome === "ORDER_NOT_FOUND") {
      throw WorkerError.of("ORDER_NOT_FOUND", `no order with out_trade_no ${facts.outTradeNo}`);
    }
    if (result.outcome === "NOTIFICATION_NOT_FOUND") {
      throw WorkerError.of("NOTIFICATION_NOT_FOUND", `notification ${facts.notificationId} has no row`);
    }
    return result;
  }
  throw WorkerError.of(
    "ORDER_CONTENDED",
    `order ${facts.outTradeNo} changed under ${STALE_RETRIES} consecutive attempts`,
  );
}
