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

export const REVIEW_LIMIT = 500;

/** Orders in PAYMENT_REVIEW (money taken, a human must decide), most recently changed first, with counts by reason. */
export async function loadReviews(
  db: DbClient,
  reason?: string,
): Promise<{ orders: ReviewOrder[]; byReason: { reason: string; count: number }[]; total: number }> {
  const where: Prisma.OrderWhereInput = { status: "PAYMENT_REVIEW", ...(reason ? { reviewReason: reason } : {}) };
  const [orders, groups] = await Promise.all([
    db.order.findMany({
      where,
      select: REVIEW_SELECT,
      orderBy: [{ updatedAt: "desc" }, { id: "asc" }],
      take: REVIEW_LIMIT,
    }),
    db.order.groupBy({ by: ["reviewReason"], where: { status: "PAYMENT_REVIEW" }, _count: { _all: true } }),
  ]);
  const byReason = groups
    .map((g) => ({ reason: g.reviewReason ?? "(none)", count: g._count._all }))
    .sort((a, b) => b.count - a.count);
  return { orders, byReason, total: byReason.reduce((sum, g) => sum + g.count, 0) };
}
