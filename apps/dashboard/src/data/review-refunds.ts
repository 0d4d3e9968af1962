import { type Order, Prisma, type Refund } from "@wpn/db";
import type { DbClient } from "./audit.ts";
import { refundedInFull } from "./settled-charges.ts";

export type ReviewRefund = Pick<
  Refund,
  | "id"
  | "outRefundNo"
  | "refundId"
  | "outTradeNo"
  | "transactionId"
  | "status"
  | "amountRefund"
  | "amountTotal"
  | "reviewReason"
  | "updatedAt"
> & {
  /**
   * Whose refund: a refund is recorded only on the order of the merchant and sub-merchant it names (Refund's key is
   * (orderId, outRefundNo)), so the order's are the refund's; its currency is the refund's too (a Refund row
   * has none). Null for a row without an order (a nullable orderId). With the order's amount and what it has refunded
   * so far (`refundedTotal`: its counted refunds), which an operator weighs a refund that would go past it against.
   */
  order: Pick<Order, "mchid" | "subMchid" | "currency" | "amountTotal" | "refundedTotal"> | null;
};

/**
 * The refunds /reviews lists, as a condition on `r` (a Refund row): every one with a reviewReason (not counted in its
 * order's refundedTotal), but for the refunds of a second charge refunded in full (`refundedInFull`): that charge is
 * settled — the refund statement takes its order out of review — and its refunds would otherwise be listed for good.
 * Read through the index (reviewReason, updatedAt); the charge's refunds, per row, through Refund's key.
 */
const IN_REVIEW = Prisma.sql`r."reviewReason" IS NOT NULL
    AND NOT (r."reviewReason" = 'DUPLICATE_PAYMENT_REFUNDED'
             AND ${refundedInFull(Prisma.sql`r."orderId"`, Prisma.sql`r."transactionId"`)})`;

interface RefundRow extends Omit<ReviewRefund, "order"> {
  orderMchid: string | null;
  orderSubMchid: string | null;
  orderCurrency: string | null;
  orderAmountTotal: number | null;
  orderRefundedTotal: number | null;
}

/** The refunds in review (`IN_REVIEW`), `reason`'s only when given, most recently changed first, at most `limit`. */
export async function listReviewRefunds(db: DbClient, limit: number, reason?: string): Promise<ReviewRefund[]> {
  const ofReason = reason === undefined ? Prisma.empty : Prisma.sql`AND r."reviewReason" = ${reason}`;
  // The page's refunds first, then their orders: only those `limit` rows look their order up (by its primary key).
  const rows = await db.$queryRaw<RefundRow[]>`
    SELECT r.id, r."outRefundNo", r."refundId", r."outTradeNo", r."transactionId", r.status, r."amountRefund",
           r."amountTotal", r."reviewReason", r."updatedAt",
           o.mchid AS "orderMchid", o."subMchid" AS "orderSubMchid", o.currency AS "orderCurrency",
           o."amountTotal" AS "orderAmountTotal", o."refundedTotal" AS "orderRefundedTotal"
      FROM (SELECT * FROM "Refund" r
             WHERE ${IN_REVIEW} ${ofReason}
             ORDER BY r."updatedAt" DESC, r.id ASC
             LIMIT ${limit}) r
      LEFT JOIN "Order" o ON o.id = r."orderId"
     ORDER BY r."updatedAt" DESC, r.id ASC`;
  return rows.map(({ orderMchid, orderSubMchid, orderCurrency, orderAmountTotal, orderRefundedTotal, ...refund }) => ({
    ...refund,
    // Order.mchid, currency, amountTotal and refundedTotal are NOT NULL: null here is the LEFT JOIN's row without an
    // order.
    order:
      orderMchid === null || orderCurrency === null || orderAmountTotal === null || orderRefundedTotal === null
        ? null
        : {
            mchid: orderMchid,
            subMchid: orderSubMchid,
            currency: orderCurrency,
            amountTotal: orderAmountTotal,
            refundedTotal: orderRefundedTotal,
          },
  }));
}

/** How many refunds are in review (`IN_REVIEW`), by reviewReason. */
export async function countReviewRefunds(db: DbClient): Promise<{ reason: string; count: number }[]> {
  return db.$queryRaw<{ reason: string; count: number }[]>`
    SELECT r."reviewReason" AS reason, count(*)::int AS count
      FROM "Refund" r
     WHERE ${IN_REVIEW}
     GROUP BY r."reviewReason"`;
}
