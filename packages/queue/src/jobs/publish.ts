import { z } from "zod";

/**
 * Payload of a `notify.publish` job: one business event per effect the apply stage committed, for the
 * merchant's other systems (fulfilment, ERP, CRM), which consume `notify.publish` with their own BullMQ
 * worker. Delivery is at least once: a re-run apply job re-publishes with the same job id, which BullMQ
 * drops while the first copy is still kept, but consumers must still treat `notificationId` + `type` as an
 * idempotency key. No payer data. Amounts in fen.
 */
export const PUBLISH_EVENT_TYPES = [
  /** The order was paid and its stock taken. */
  "payment.succeeded",
  /**
   * Money was taken but the order needs a human (`reviewReason`: AMOUNT_MISMATCH, OUT_OF_STOCK, …, or
   * TRANSACTION_CONFLICT — the payment's transaction id is already another order's, so it was not applied and
   * `orderStatus` is unchanged).
   */
  "payment.review",
  /** A refund succeeded; `orderStatus` is REFUND once the refunds add up to the order total. */
  "refund.succeeded",
  /** A refund ended ABNORMAL (e.g. the payer's card was closed) and needs the merchant's action. */
  "refund.abnormal",
  /** A refund was closed without paying out. */
  "refund.closed",
  /**
   * A refund of the order that needs a human and was not counted (`reviewReason`: REFUND_AMOUNT_MISMATCH — it names
   * another order total or exceeds what is left to refund, the money having left WeChat all the same —,
   * REFUND_CONFLICT — its refund number is already recorded with other facts —, or REFUND_ID_CONFLICT — its refund id
   * is already another refund's); `orderStatus` is unchanged.
   */
  "refund.review",
] as const;

export type PublishEventType = (typeof PUBLISH_EVENT_TYPES)[number];

export const publishJobSchema = z.object({
  v: z.literal(1),
  type: z.enum(PUBLISH_EVENT_TYPES),
  notificationId: z.string().min(1).max(128),
  outTradeNo: z.string().min(1),
  orderId: z.string().min(1),
  orderStatus: z.enum(["NOTPAY", "SUCCESS", "CLOSED", "REFUND", "PAYMENT_REVIEW"]),
  reviewReason: z.string().nullable(),
  transactionId: z.string().nullable(),
  outRefundNo: z.string().nullable(),
  /** Paid amount for payment events, refunded amount for refund events, fen. */
  amount: z.number().int().nonnegative(),
  /** When the effect was committed, ms since the epoch. */
  occurredAt: z.number().int().nonnegative(),
});

export type PublishJob = z.infer<typeof publishJobSchema>;

/** BullMQ job name of publish jobs: the event type, so consumers can route on `job.name`. */
export const publishJobName = (type: PublishEventType): string => type;
