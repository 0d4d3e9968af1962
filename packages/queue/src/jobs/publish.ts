import { z } from "zod";
import { NOTIFICATION_ID_MAX_LENGTH } from "./ids.ts";

/**
 * Payload of a `notify.publish` job: one business event per effect the apply stage committed, for the
 * merchant's other systems (fulfilment, ERP, CRM), which consume `notify.publish` with their own BullMQ
 * worker (queue, prefix, job name and id, retries: apps/worker/README.md, "Events"). Delivery is at least once: a
 * re-run apply job re-publishes with the same job id, which BullMQ drops while the first copy is still kept, but
 * consumers must still apply each `notificationId` once (a notification settles once, so its copies share their
 * `type`; another notification id of the same payment or refund is DUPLICATE and publishes nothing). No payer data.
 * Amounts in fen.
 *
 * A repeated copy is derived again by the later run from what the first one recorded (the notification's status,
 * review code and commit time), so `type`, `reviewReason`, `amount`, `occurredAt`, `mchid`, `subMchid` and
 * `restockByHand` are the same in every copy; `orderStatus` is read when the event is derived and may be later than
 * the status the effect committed.
 *
 * Versions: `v` is the major version, 1 — a consumer refuses a `v` it does not know, and it changes only for a change
 * a v1 consumer would misread. `rev` is the revision within v1, which only ever adds fields: a consumer of an earlier
 * revision parses a later one's events (it ignores fields it does not know, as a zod object does — never `.strict()`),
 * and a consumer of a later revision reads an earlier one's events, which lack the fields added since (events queued
 * by a worker of an older release stay in the queue, failed ones until retried). Revision 1 has no `rev` field;
 * revision 2 (PUBLISH_EVENT_REVISION) added `mchid`, `subMchid` and `restockByHand`, present in every event that
 * has `rev`.
 */
export const PUBLISH_EVENT_TYPES = [
  /** The order was paid and its stock taken. */
  "payment.succeeded",
  /**
   * Money was taken but the payment needs a human (`reviewReason`: AMOUNT_MISMATCH, OUT_OF_STOCK, …;
   * DUPLICATE_PAYMENT — the order was already paid by another transaction, whatever its status now (SUCCESS, which
   * goes to PAYMENT_REVIEW, or REFUND, PAYMENT_REVIEW, left as they are): this second charge is to be refunded — one
   * such event per charge (`transactionId`), however many notification ids WeChat reported it under; or
   * TRANSACTION_CONFLICT — the payment's transaction id is already another order's, so it was not applied and
   * `orderStatus` is unchanged; or DUPLICATE_MISMATCH — a further report of the order's transaction names another
   * amount, currency, appid or payer than was applied: nothing changed, `amount` is this report's, `orderStatus` the
   * order's).
   */
  "payment.review",
  /**
   * A refund succeeded; `orderStatus` is REFUND once the refunds add up to the order total — PAYMENT_REVIEW while the
   * order is in review for a second charge not refunded yet (DUPLICATE_PAYMENT). `reviewReason` is null,
   * or RESTOCK_OUT_OF_RANGE: the refund is counted, but the stock its order's payment took was not put back (some
   * SKU's stock would pass 2^31-1), for a human to restock.
   */
  "refund.succeeded",
  /**
   * A refund ended ABNORMAL (e.g. the payer's card was closed) and needs the merchant's action (`reviewReason`
   * REFUND_ABNORMAL). When it is the refund of a second charge of the order (one `payment.review` reported as
   * DUPLICATE_PAYMENT), `transactionId` is that charge's, not the order's, as in `refund.review`.
   */
  "refund.abnormal",
  /**
   * A refund was closed without paying out (`reviewReason` REFUND_CLOSED). As for `refund.abnormal`, the refund of a
   * second charge (DUPLICATE_PAYMENT) carries that charge's `transactionId`, not the order's. Both are published for a
   * paid order only: one delivered before its order's payment waits for it (ORDER_NOT_PAID), as a successful refund.
   */
  "refund.closed",
  /**
   * A refund of the order that needs a human and was not counted (`reviewReason`: REFUND_AMOUNT_MISMATCH — it names
   * another order total or exceeds what is left to refund, the money having left WeChat all the same —,
   * REFUND_CONFLICT — its refund number is already recorded with other facts —, REFUND_ID_CONFLICT — its refund id
   * is already another refund's —, or DUPLICATE_PAYMENT_REFUNDED — the refund of a second charge of the order, which
   * a `payment.review` with DUPLICATE_PAYMENT asked for: `transactionId` is that charge's, not the order's);
   * `orderStatus` is unchanged, but for the refund of a second charge that completes the refunds of every second
   * charge of the order (each adds up to the charge's total): an order in PAYMENT_REVIEW for DUPLICATE_PAYMENT is
   * SUCCESS again — REFUND when the payment it kept was refunded in full meanwhile.
   */
  "refund.review",
] as const;

export type PublishEventType = (typeof PUBLISH_EVENT_TYPES)[number];

/** The revision of v1 this release's workers write (`rev`); see above. */
export const PUBLISH_EVENT_REVISION = 2;

/** One SKU of a `restockByHand` list: what the order's payment took of it, all of it owed. */
const restockLineSchema = z.object({
  skuId: z.string().min(1),
  /** Units. */
  quantity: z.number().int().positive(),
});

/**
 * The fields of v1, those added by a revision optional (events of an earlier revision lack them); publishJobSchema
 * requires them in an event that says its `rev`.
 */
const publishJobObject = z.object({
  v: z.literal(1),
  /**
   * The revision of v1 (above): absent in a revision-1 event, 2 from this release on; a later revision's number is
   * higher, its events having every field of this one.
   */
  rev: z.number().int().min(2).optional(),
  type: z.enum(PUBLISH_EVENT_TYPES),
  /**
   * The notification id (jobs/ids.ts), also this job's id: APIv3 `v3:<mchid>:<WeChat's id>` (WeChat's id alone when
   * an older ingress queued it), APIv2 `v2:pay:…` / `v2:refund:…`.
   */
  notificationId: z.string().min(1).max(NOTIFICATION_ID_MAX_LENGTH),
  outTradeNo: z.string().min(1),
  orderId: z.string().min(1),
  /**
   * The order's status when the event was derived: the one the effect committed, except in a copy derived again by
   * a later run (a job re-run after the commit, a replay), which reads the order as it is then.
   */
  orderStatus: z.enum(["NOTPAY", "SUCCESS", "CLOSED", "REFUND", "PAYMENT_REVIEW"]),
  /**
   * Why this notification's payment or refund needs a human: the code it was put in review with (see the event
   * types); null for `payment.succeeded`, and for `refund.succeeded` but when its stock was not put back
   * (RESTOCK_OUT_OF_RANGE). Never the order's own reviewReason, which may be
   * another notification's.
   */
  reviewReason: z.string().nullable(),
  /**
   * WeChat's transaction_id as the notification names it, null when it names none. A payment event's is the charge
   * it reports (DUPLICATE_PAYMENT: the second charge, not the one the order kept; TRANSACTION_CONFLICT: already another
   * order's); a refund event's is the charge refunded — the order's, or a second charge's (DUPLICATE_PAYMENT_REFUNDED,
   * and refund.abnormal / refund.closed of such a refund).
   */
  transactionId: z.string().nullable(),
  outRefundNo: z.string().nullable(),
  /** Paid amount for payment events, refunded amount for refund events, fen. */
  amount: z.number().int().nonnegative(),
  /**
   * When the effect was committed (the notification's appliedAt), ms since the epoch; the same in a copy derived
   * again by a later run.
   */
  occurredAt: z.number().int().nonnegative(),
  /**
   * Revision 2. The merchant whose order it is: the merchant whose keys authenticated the notification (verified and
   * opened it; the notification must name it), which is the order's `mchid` — in partner mode the service provider's
   * (`sp_mchid`). `outTradeNo` is unique only per merchant and sub-merchant; with `subMchid` it names the order as
   * the merchant's systems know it (`orderId` names it in this deployment).
   */
  mchid: z.string().min(1).optional(),
  /**
   * Revision 2. Partner mode: the sub-merchant whose order it is (the order's `subMchid`, the one the notification
   * names — APIv3 `sub_mchid` inside the encrypted resource; APIv2 `sub_mch_id`, signed in a payment, and in a refund
   * the outer field the order was found under, whose transaction the encrypted `req_info` names); null for a direct
   * merchant.
   */
  subMchid: z.string().min(1).nullable().optional(),
  /**
   * Revision 2. For a `refund.succeeded` with reviewReason RESTOCK_OUT_OF_RANGE: the stock the refund did not put
   * back, for a human to restock — every SKU the order's payment took and how much (no SKU was put back: all or
   * nothing), sorted by `skuId`; what the refund's REVIEW timeline entry lists as `restockByHand` (apps/worker/README.md,
   * "Stock a refund did not put back"). Null in every other event.
   */
  restockByHand: z.array(restockLineSchema).min(1).nullable().optional(),
});

// A consumer of revision 2 may rely on its fields in every event that says it is of revision 2 or later.
export const publishJobSchema = publishJobObject.superRefine((event, ctx) => {
  if (event.rev === undefined) return;
  for (const field of ["mchid", "subMchid", "restockByHand"] as const) {
    if (event[field] === undefined) {
      ctx.addIssue({ code: "custom", path: [field], message: `required from revision ${PUBLISH_EVENT_REVISION}` });
    }
  }
});

/** An event as a consumer reads it: of revision 1 (no `rev`, none of the fields added since) or later. */
export type PublishJob = z.infer<typeof publishJobSchema>;

/** An event as this release's workers write it: revision 2, every field of it present. */
export type PublishEvent = PublishJob & {
  rev: typeof PUBLISH_EVENT_REVISION;
  mchid: string;
  subMchid: string | null;
  restockByHand: RestockLine[] | null;
};

export type RestockLine = z.infer<typeof restockLineSchema>;

/** BullMQ job name of publish jobs: the event type, so consumers can route on `job.name`. */
export const publishJobName = (type: PublishEventType): string => type;
