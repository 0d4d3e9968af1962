import {
  PAYMENT_REVIEW_OUTCOMES,
  type PaymentFacts,
  type PaymentResult,
  type RefundFacts,
  type RefundResultRow,
} from "@wpn/db";
import { PUBLISH_EVENT_REVISION, type PublishEvent, type PublishEventType } from "@wpn/queue";

type OrderStatus = PublishEvent["orderStatus"];
const ORDER_STATUSES: ReadonlySet<string> = new Set(["NOTPAY", "SUCCESS", "CLOSED", "REFUND", "PAYMENT_REVIEW"]);

/**
 * Review codes of a payment that the order's merchant hears of (`payment.review`): every review outcome.
 * TRANSACTION_CONFLICT is heard of: it changed nothing on the order, but it names the order's merchant, whose money
 * may have been taken; so is DUPLICATE_MISMATCH: WeChat reported the order's own transaction with other facts than
 * were applied (`amount` is the one this report names), which the merchant reconciles. Not MCHID_MISMATCH, the code
 * of a payment of another merchant that found the order before orders were per merchant (migration 20261207110002):
 * a re-run of such a notification (ALREADY) publishes nothing, its order's merchant has nothing to hear of.
 */
const PAYMENT_REVIEW_EVENT_CODES: ReadonlySet<string> = new Set(PAYMENT_REVIEW_OUTCOMES);

/**
 * Review outcomes of a refund of the order's money (its merchant, its transaction or a second charge of it): the
 * merchant's systems hear of them (`refund.review`), as they hear of a payment in review — REFUND_ID_CONFLICT too: its refund id is
 * another refund's, so it was not recorded, but it names the order's merchant and transaction; and
 * DUPLICATE_PAYMENT_REFUNDED, the refund of a second charge of the order, which their payment.review
 * (DUPLICATE_PAYMENT) asked for: `transactionId` names that charge. A refund that names a transaction that is not
 * the order's (TRANSACTION_MISMATCH), or that found another merchant's order before orders were per merchant
 * (MCHID_MISMATCH, a code of notifications decided before migration 20261207110002), is not the order's: no event.
 */
const REFUND_REVIEW_EVENT_CODES: ReadonlySet<string> = new Set([
  "REFUND_AMOUNT_MISMATCH",
  "REFUND_CONFLICT",
  "REFUND_ID_CONFLICT",
  "DUPLICATE_PAYMENT_REFUNDED",
]);

/**
 * The event a committed payment publishes, or null (duplicate, nothing committed, another merchant's payment).
 * ALREADY (the job ran before, e.g. it crashed after the commit and before enqueueing the event) re-derives the
 * event from what the earlier run recorded on the notification, so the event is not lost; the publish job id makes
 * the repeat a no-op while the first copy is kept.
 *
 * `reviewReason` is this payment's own review code — the statement's outcome, or for ALREADY the code the earlier
 * run recorded — never the order's: a payment whose code the statement does not put on the order leaves the order's reason,
 * which is another notification's (a second transaction on an OUT_OF_STOCK order is DUPLICATE_PAYMENT, the order
 * keeps OUT_OF_STOCK) or none (a refunded order paid again stays REFUND), and the merchant would not learn that this
 * second charge needs refunding.
 */
export function paymentEvent(facts: PaymentFacts, result: PaymentResult): PublishEvent | null {
  const code = result.outcome === "ALREADY" ? settledCode(result) : result.outcome;
  const type: PublishEventType | null =
    code === "APPLIED"
      ? "payment.succeeded"
      : code !== null && PAYMENT_REVIEW_EVENT_CODES.has(code)
        ? "payment.review"
        : null;
  return publishJob(type, facts, result, {
    reviewReason: type === "payment.review" ? code : null,
    outRefundNo: null,
    amount: facts.total,
    restockByHand: null,
  });
}

/**
 * The event a committed refund publishes, or null. As for payments, `reviewReason` is this refund's own code
 * (refund.review: REFUND_AMOUNT_MISMATCH, REFUND_CONFLICT, REFUND_ID_CONFLICT, DUPLICATE_PAYMENT_REFUNDED;
 * refund.abnormal: REFUND_ABNORMAL;
 * refund.closed: REFUND_CLOSED), never the order's. refund.succeeded's is null, or RESTOCK_OUT_OF_RANGE: the refund
 * was counted like any other (the merchant's systems must hear that it succeeded), but its stock was not put back —
 * what is owed is `restockByHand`, which the statement returns for that code (also for ALREADY: the same list).
 */
export function refundEvent(facts: RefundFacts, result: RefundResultRow): PublishEvent | null {
  const code = result.outcome === "ALREADY" ? settledCode(result) : result.outcome;
  const type: PublishEventType | null =
    code === "APPLIED" || code === "RESTOCK_OUT_OF_RANGE"
      ? "refund.succeeded"
      : code === "REFUND_ABNORMAL"
        ? "refund.abnormal"
        : code === "REFUND_CLOSED"
          ? "refund.closed"
          : code !== null && REFUND_REVIEW_EVENT_CODES.has(code)
            ? "refund.review"
            : null;
  return publishJob(type, facts, result, {
    reviewReason: code === "APPLIED" ? null : code,
    outRefundNo: facts.outRefundNo,
    amount: facts.amountRefund,
    restockByHand: code === "RESTOCK_OUT_OF_RANGE" ? result.restockByHand : null,
  });
}

/**
 * The publish job shared by payments and refunds, or null when there is nothing to publish: no event type, no
 * order, an order status outside the published set, or no commit time (the statements write appliedAt with every
 * status an event is derived from, so an event type comes with one).
 *
 * `mchid` and `subMchid` are the facts': the merchant whose keys opened the notification (which must name it) and
 * the sub-merchant it names, under which the statement found the order (`orderId`: the order of that merchant,
 * sub-merchant and out_trade_no), so they are the order's own — never the job's clear fields, which anyone who can
 * write to Redis could set. An APIv2 refund's sub-merchant is the unsigned outer `sub_mch_id`: the refund statement
 * applies it only when the order found under it holds the transaction the encrypted `req_info` names (or a second
 * charge of it); otherwise SUB_MCHID_MISMATCH or TRANSACTION_MISMATCH, no event.
 */
function publishJob(
  type: PublishEventType | null,
  facts: {
    notificationId: string;
    outTradeNo: string;
    transactionId: string | null;
    mchid: string;
    subMchid: string | null;
  },
  result: { orderId: string | null; orderStatus: string | null; appliedAt: number | null },
  specific: Pick<PublishEvent, "reviewReason" | "outRefundNo" | "amount" | "restockByHand">,
): PublishEvent | null {
  if (type === null || result.orderId === null || result.appliedAt === null) return null;
  if (!ORDER_STATUSES.has(result.orderStatus ?? "")) return null;
  return {
    v: 1,
    rev: PUBLISH_EVENT_REVISION,
    type,
    notificationId: facts.notificationId,
    mchid: facts.mchid,
    subMchid: facts.subMchid,
    outTradeNo: facts.outTradeNo,
    orderId: result.orderId,
    orderStatus: result.orderStatus as OrderStatus,
    transactionId: facts.transactionId,
    ...specific,
    // When the effect was committed, also for an event re-derived by a later run (ALREADY).
    occurredAt: result.appliedAt,
  };
}

/**
 * What an earlier run settled the notification as, for ALREADY: APPLIED, or the code it was put in REVIEW with;
 * null for DUPLICATE and IGNORED (nothing to publish).
 */
function settledCode(result: { notificationStatus: string | null; notificationCode: string | null }): string | null {
  if (result.notificationStatus === "APPLIED") return "APPLIED";
  if (result.notificationStatus === "REVIEW") return result.notificationCode;
  return null;
}
