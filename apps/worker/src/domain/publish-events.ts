import type { PaymentFacts, PaymentResult, RefundFacts, RefundResultRow } from "@wpn/db";
import type { PublishEventType, PublishJob } from "@wpn/queue";
import { isPaymentReview } from "./apply-payment.ts";

type OrderStatus = PublishJob["orderStatus"];
const ORDER_STATUSES: ReadonlySet<string> = new Set(["NOTPAY", "SUCCESS", "CLOSED", "REFUND", "PAYMENT_REVIEW"]);

/**
 * The event a committed payment publishes, or null (duplicate, nothing committed). ALREADY (the job ran
 * before, e.g. it crashed after the commit and before enqueueing the event) re-derives the event from what
 * the earlier run recorded, so the event is not lost; the publish job id makes the repeat a no-op while the
 * first copy is kept.
 */
export function paymentEvent(facts: PaymentFacts, result: PaymentResult, now = Date.now()): PublishJob | null {
  let type: PublishEventType | null = null;
  // A payment of another merchant changed nothing on the order (see the payment statement): nothing to tell the
  // order's merchant — whose systems would otherwise hear of a payment that is not theirs, as refunds already do.
  const otherMerchant =
    result.outcome === "MCHID_MISMATCH" ||
    (result.outcome === "ALREADY" && result.notificationCode === "MCHID_MISMATCH");
  if (otherMerchant) type = null;
  else if (result.outcome === "APPLIED") type = "payment.succeeded";
  else if (isPaymentReview(result.outcome)) type = "payment.review";
  else if (result.outcome === "ALREADY" && result.notificationStatus === "APPLIED") type = "payment.succeeded";
  else if (result.outcome === "ALREADY" && result.notificationStatus === "REVIEW") type = "payment.review";
  // A payment of the order's merchant whose transaction id is another order's changed nothing on the order either,
  // but it names the order's merchant, whose money may have been taken: `payment.review` tells it, with the code as
  // reviewReason — the order's own (usually none, the order still NOTPAY) does not say why the payment was not applied.
  const conflict =
    result.outcome === "TRANSACTION_CONFLICT" ||
    (result.outcome === "ALREADY" && result.notificationCode === "TRANSACTION_CONFLICT");
  const withReason = conflict ? { ...result, reviewReason: "TRANSACTION_CONFLICT" } : result;
  return publishJob(type, facts, withReason, { outRefundNo: null, amount: facts.total }, now);
}

/**
 * Review outcomes of a refund of the order's own payment (its merchant and transaction): the merchant's systems
 * hear of them (`refund.review`, the code as `reviewReason`), as they hear of a payment in review — REFUND_ID_CONFLICT
 * too: its refund id is another refund's, so it was not recorded, but it names the order's merchant and transaction.
 * A refund that names another merchant or transaction (MCHID_MISMATCH, TRANSACTION_MISMATCH) is not the order's: no
 * event.
 */
const REFUND_REVIEW_EVENT_CODES: ReadonlySet<string> = new Set([
  "REFUND_AMOUNT_MISMATCH",
  "REFUND_CONFLICT",
  "REFUND_ID_CONFLICT",
]);

/** The event a committed refund publishes, or null. */
export function refundEvent(facts: RefundFacts, result: RefundResultRow, now = Date.now()): PublishJob | null {
  const code = result.outcome === "ALREADY" ? alreadyCode(result) : result.outcome;
  const review = code !== null && REFUND_REVIEW_EVENT_CODES.has(code);
  const type: PublishEventType | null =
    code === "APPLIED"
      ? "refund.succeeded"
      : code === "REFUND_ABNORMAL"
        ? "refund.abnormal"
        : code === "REFUND_CLOSED"
          ? "refund.closed"
          : review
            ? "refund.review"
            : null;
  // The order's own review reason does not say why this refund was not counted; the refund's code does.
  const withReason = review ? { ...result, reviewReason: code } : result;
  return publishJob(type, facts, withReason, { outRefundNo: facts.outRefundNo, amount: facts.amountRefund }, now);
}

/**
 * The publish job shared by payments and refunds, or null when there is nothing to publish (no event type,
 * no order, or an order status outside the published set).
 */
function publishJob(
  type: PublishEventType | null,
  facts: { notificationId: string; outTradeNo: string; transactionId: string | null },
  result: { orderId: string | null; orderStatus: string | null; reviewReason: string | null },
  specific: { outRefundNo: string | null; amount: number },
  now: number,
): PublishJob | null {
  if (type === null || result.orderId === null || !ORDER_STATUSES.has(result.orderStatus ?? "")) return null;
  return {
    v: 1,
    type,
    notificationId: facts.notificationId,
    outTradeNo: facts.outTradeNo,
    orderId: result.orderId,
    orderStatus: result.orderStatus as OrderStatus,
    reviewReason: result.reviewReason,
    transactionId: facts.transactionId,
    ...specific,
    occurredAt: now,
  };
}

function alreadyCode(result: RefundResultRow): string | null {
  if (result.notificationStatus === "APPLIED") return "APPLIED";
  if (result.notificationStatus === "REVIEW") return result.notificationCode;
  return null;
}
