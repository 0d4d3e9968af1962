import type { Prisma } from "@wpn/db";
import type { DbClient } from "./audit.ts";

const REVIEW_SELECT = {
  id: true,
  outTradeNo: true,
  mchid: true,
  subMchid: true,
  amountTotal: true,
  currency: true,
  reviewReason: true,
  transactionId: true,
  paidAt: true,
  updatedAt: true,
} satisfies Prisma.OrderSelect;

export type ReviewOrder = Prisma.OrderGetPayload<{ select: typeof REVIEW_SELECT }>;

const REFUND_REVIEW_SELECT = {
  id: true,
  outRefundNo: true,
  refundId: true,
  outTradeNo: true,
  transactionId: true,
  status: true,
  amountRefund: true,
  amountTotal: true,
  reviewReason: true,
  updatedAt: true,
} satisfies Prisma.RefundSelect;

export type ReviewRefund = Prisma.RefundGetPayload<{ select: typeof REFUND_REVIEW_SELECT }>;

/** Rows shown per list (orders, refunds). */
export const REVIEW_LIMIT = 500;

export interface Reviews {
  orders: ReviewOrder[];
  /** Refunds recorded as WeChat reported them but not counted in their order's refundedTotal. */
  refunds: ReviewRefund[];
  /** Counts by reason over both lists (a reason names its kind: REFUND_… for refunds). */
  byReason: { reason: string; count: number }[];
  total: number;
}

/**
 * What a human must decide, most recently changed first: orders in PAYMENT_REVIEW (money taken) and refunds not
 * counted (REFUND_AMOUNT_MISMATCH: a refund of more than was paid, or against another total), with counts by reason.
 */
export async function loadReviews(db: DbClient, reason?: string): Promise<Reviews> {
  const [orders, refunds, orderGroups, refundGroups] = await Promise.all([
    db.order.findMany({
      where: { status: "PAYMENT_REVIEW", ...(reason ? { reviewReason: reason } : {}) },
      select: REVIEW_SELECT,
      orderBy: [{ updatedAt: "desc" }, { id: "asc" }],
      take: REVIEW_LIMIT,
    }),
    db.refund.findMany({
      where: { reviewReason: reason ?? { not: null } },
      select: REFUND_REVIEW_SELECT,
      orderBy: [{ updatedAt: "desc" }, { id: "asc" }],
      take: REVIEW_LIMIT,
    }),
    db.order.groupBy({ by: ["reviewReason"], where: { status: "PAYMENT_REVIEW" }, _count: { _all: true } }),
    db.refund.groupBy({ by: ["reviewReason"], where: { reviewReason: { not: null } }, _count: { _all: true } }),
  ]);
  const counts = new Map<string, number>();
  for (const g of [...orderGroups, ...refundGroups]) {
    const key = g.reviewReason ?? "(none)";
    counts.set(key, (counts.get(key) ?? 0) + g._count._all);
  }
  const byReason = [...counts].map(([r, count]) => ({ reason: r, count })).sort((a, b) => b.count - a.count);
  return { orders, refunds, byReason, total: byReason.reduce((sum, g) => sum + g.count, 0) };
}
