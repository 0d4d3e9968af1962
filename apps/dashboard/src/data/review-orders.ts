import { type Order, Prisma } from "@wpn/db";
import type { DbClient } from "./audit.ts";

export type ReviewOrder = Pick<
  Order,
  | "id"
  | "outTradeNo"
  | "mchid"
  | "subMchid"
  | "amountTotal"
  | "currency"
  | "paidTotal"
  | "paidCurrency"
  | "reviewReason"
  | "transactionId"
  | "paidAt"
  | "updatedAt"
> & {
  /**
   * DUPLICATE_PAYMENT: the order's second charges (PaymentTransaction.secondCharge), oldest first — the money to
   * refund, where transactionId is the charge that paid the order. Empty for every other order.
   */
  secondCharges: string[];
};

/*
 * The orders in PAYMENT_REVIEW: every one of them is in the partial index Order_reviewReason_updatedAt_idx (migration
 * 20261210130000), and no other order. The count reads that index alone (an index-only scan: the reviewReason is in
 * it) and a reason's list reads that reason's entries only, newest first; through the (status, updatedAt) index both
 * read the row of every order in review, tens of thousands on a sale day with a systematic double charge, on every
 * /reviews page and overview refresh. The status is written as a literal, not a parameter: PostgreSQL uses a partial
 * index only where it can prove the statement's condition implies the index's, which a parameter cast to the enum
 * (Prisma's `status = CAST($1::text AS "OrderStatus")`) never lets it.
 */

/**
 * The orders in review, `reason`'s only when given (null: those without one), most recently changed first, at most
 * `limit`.
 */
export async function listReviewOrders(db: DbClient, limit: number, reason?: string | null): Promise<ReviewOrder[]> {
  const ofReason =
    reason === undefined
      ? Prisma.empty
      : reason === null
        ? Prisma.sql`AND o."reviewReason" IS NULL`
        : Prisma.sql`AND o."reviewReason" = ${reason}`;
  return db.$queryRaw<ReviewOrder[]>`
    SELECT o.id, o."outTradeNo", o.mchid, o."subMchid", o."amountTotal", o.currency, o."paidTotal",
           o."paidCurrency", o."reviewReason",
           o."transactionId", o."paidAt", o."updatedAt",
           ARRAY(SELECT p."transactionId" FROM "PaymentTransaction" p
                  WHERE p."orderId" = o.id AND p."secondCharge"
                  ORDER BY p."createdAt", p."transactionId") AS "secondCharges"
      FROM "Order" o
     WHERE o.status = 'PAYMENT_REVIEW' ${ofReason}
     ORDER BY o."updatedAt" DESC, o.id ASC
     LIMIT ${limit}`;
}

/** How many orders are in review, by reviewReason (null for an order put in review without one). */
export async function countReviewOrders(db: DbClient): Promise<{ reason: string | null; count: number }[]> {
  return db.$queryRaw<{ reason: string | null; count: number }[]>`
    SELECT o."reviewReason" AS reason, count(*)::int AS count
      FROM "Order" o
     WHERE o.status = 'PAYMENT_REVIEW'
     GROUP BY o."reviewReason"`;
}
