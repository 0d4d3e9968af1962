import { type Notification, Prisma } from "@wpn/db";
import type { DbClient } from "./audit.ts";
import { refundedInFull } from "./settled-charges.ts";

/**
 * Review outcomes that leave no order in PAYMENT_REVIEW and no refund with a reviewReason: only the notification
 * (status REVIEW, errorCode) says a human should look — a payment of another merchant or carrying another order's
 * transaction id, a second payment of an order that was not in SUCCESS (the order is not put in review), a further
 * report of the order's transaction with other facts (DUPLICATE_MISMATCH: the order keeps the first), a refund that
 * does not match its order or another refund, a refund WeChat reports abnormal (the merchant must act in WeChat's
 * merchant platform) or closed, a refund counted whose stock could not be put back (RESTOCK_OUT_OF_RANGE). TRANSACTION_MISMATCH is decided only after the unknown-order window: until then such a
 * refund is FAILED with TRANSACTION_NOT_SEEN (retried, not for review — the second charge it may refund can still be
 * delivered) — at once when the transaction is another order's (nothing can make it this order's).
 */
export const NOTIFICATION_ONLY_REVIEW_CODES = [
  // Decided only before migration 20261207110002 (orders per merchant): another merchant's payment or refund naming
  // an order's number. Such notifications stay listed for their 7 days.
  "MCHID_MISMATCH",
  "TRANSACTION_CONFLICT",
  "DUPLICATE_MISMATCH",
  "DUPLICATE_PAYMENT",
  "TRANSACTION_MISMATCH",
  "REFUND_CONFLICT",
  "REFUND_ID_CONFLICT",
  "REFUND_ABNORMAL",
  "REFUND_CLOSED",
  // A refund counted whose restock would take a SKU's stock past 2^31-1: the stock is to be put back by hand (the
  // notification's REVIEW timeline entry names the SKUs).
  "RESTOCK_OUT_OF_RANGE",
] as const;

/**
 * How far back the page lists those notifications, days. Nothing takes a notification out of REVIEW (orders and
 * refunds leave review when someone settles them), so an unbounded list would only grow.
 */
export const NOTIFICATION_REVIEW_DAYS = 7;

export type ReviewNotification = Pick<
  Notification,
  | "id"
  | "mchid"
  | "eventType"
  | "receivedAt"
  | "errorCode"
  | "outTradeNo"
  | "transactionId"
  | "outRefundNo"
  | "subMchid"
>;

export function isNotificationOnly(code: string): boolean {
  return (NOTIFICATION_ONLY_REVIEW_CODES as readonly string[]).includes(code);
}

/**
 * The notifications /reviews lists, as a condition on `n` (a Notification row): in REVIEW, received within
 * NOTIFICATION_REVIEW_DAYS of `now`, with a NOTIFICATION_ONLY_REVIEW_CODES code. A second payment of an order in
 * SUCCESS puts the order in review with DUPLICATE_PAYMENT: the order's row tells it, and its notification is not
 * listed again (nor counted twice). The notification's order is its merchant's and sub-merchant's number (another
 * merchant's order "1001" in that review does not hide this one's); a partner row parsed before migration
 * 20261202130000 records no sub-merchant and is listed beside its order. Nor is the notification of a second charge
 * refunded in full (`refundedInFull`) listed, whatever its order's state: that charge is settled — the refund statement
 * takes the order out of review, and the notification, no longer hidden behind it, would be listed for its 7 days.
 *
 * That order and the charge's refunds are looked up per notification (NOT EXISTS, through Order's key, which leads
 * with outTradeNo, and Refund's, which leads with orderId), not fetched beforehand and sent back as parameters: the
 * orders in review are as many as a sale day makes them, and three parameters per order made the statement's cost
 * grow with orders × notifications and failed it outright past 21,845 orders (65,535 parameters).
 *
 * Timestamps are `timestamp(3)` holding UTC: `now` goes in as epoch milliseconds, turned into UTC wall time in SQL.
 */
function inReview(now: Date): Prisma.Sql {
  const sinceMs = now.getTime() - NOTIFICATION_REVIEW_DAYS * 86_400_000;
  return Prisma.sql`n.status = 'REVIEW'
    AND n."receivedAt" >= (to_timestamp(${sinceMs}::double precision / 1000) AT TIME ZONE 'UTC')
    AND n."errorCode" IN (${Prisma.join(NOTIFICATION_ONLY_REVIEW_CODES)})
    AND NOT (n."errorCode" = 'DUPLICATE_PAYMENT' AND EXISTS (
      SELECT 1 FROM "Order" o
       WHERE o."outTradeNo" = n."outTradeNo" AND o.mchid = n.mchid AND o."subMchid" IS NOT DISTINCT FROM n."subMchid"
         AND ((o.status = 'PAYMENT_REVIEW' AND o."reviewReason" = 'DUPLICATE_PAYMENT')
              OR ${refundedInFull(Prisma.sql`o.id`, Prisma.sql`n."transactionId"`)})))`;
}

/** The notifications in review (`inReview`), `reason`'s only when given, newest first, at most `limit`. */
export async function listReviewNotifications(
  db: DbClient,
  now: Date,
  limit: number,
  reason?: string,
): Promise<ReviewNotification[]> {
  const ofReason = reason === undefined ? Prisma.empty : Prisma.sql`AND n."errorCode" = ${reason}`;
  return db.$queryRaw<ReviewNotification[]>`
    SELECT n.id, n.mchid, n."eventType", n."receivedAt", n."errorCode", n."outTradeNo", n."transactionId",
           n."outRefundNo", n."subMchid"
      FROM "Notification" n
     WHERE ${inReview(now)} ${ofReason}
     ORDER BY n."receivedAt" DESC, n.id DESC
     LIMIT ${limit}`;
}

/** How many notifications are in review (`inReview`), by errorCode. */
export async function countReviewNotifications(db: DbClient, now: Date): Promise<{ reason: string; count: number }[]> {
  return db.$queryRaw<{ reason: string; count: number }[]>`
    SELECT n."errorCode" AS reason, count(*)::int AS count
      FROM "Notification" n
     WHERE ${inReview(now)}
     GROUP BY n."errorCode"`;
}
