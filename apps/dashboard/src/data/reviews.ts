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
  /**
   * Whose refund: a refund is recorded only under its order's merchant and sub-merchant (another one's is
   * MCHID_MISMATCH, not recorded), so the order's are the refund's. Null for a row without an order (a nullable
   * orderId).
   */
  order: { select: { mchid: true, subMchid: true } },
} satisfies Prisma.RefundSelect;

export type ReviewRefund = Prisma.RefundGetPayload<{ select: typeof REFUND_REVIEW_SELECT }>;

const NOTIFICATION_REVIEW_SELECT = {
  id: true,
  mchid: true,
  eventType: true,
  receivedAt: true,
  errorCode: true,
  outTradeNo: true,
  transactionId: true,
  outRefundNo: true,
  subMchid: true,
} satisfies Prisma.NotificationSelect;

export type ReviewNotification = Prisma.NotificationGetPayload<{ select: typeof NOTIFICATION_REVIEW_SELECT }>;

/**
 * Review outcomes that leave no order in PAYMENT_REVIEW and no refund with a reviewReason: only the notification
 * (status REVIEW, errorCode) says a human should look — a payment of another merchant or carrying another order's
 * transaction id, a second payment of an order that was not in SUCCESS (the order is not put in review), a refund that does not match its order or another
 * refund, a refund WeChat reports abnormal (the merchant must act in WeChat's merchant platform) or closed.
 */
export const NOTIFICATION_ONLY_REVIEW_CODES = [
  "MCHID_MISMATCH",
  "TRANSACTION_CONFLICT",
  "DUPLICATE_PAYMENT",
  "TRANSACTION_MISMATCH",
  "REFUND_CONFLICT",
  "REFUND_ID_CONFLICT",
  "REFUND_ABNORMAL",
  "REFUND_CLOSED",
] as const;

/**
 * How far back the page lists those notifications, days. Nothing takes a notification out of REVIEW (orders and
 * refunds leave review when someone settles them), so an unbounded list would only grow.
 */
export const NOTIFICATION_REVIEW_DAYS = 7;

/** Rows shown per list (orders, refunds, notifications). */
export const REVIEW_LIMIT = 500;

export interface Reviews {
  orders: ReviewOrder[];
  /** Refunds recorded as WeChat reported them but not counted in their order's refundedTotal. */
  refunds: ReviewRefund[];
  /** Notifications of the last NOTIFICATION_REVIEW_DAYS in REVIEW with a NOTIFICATION_ONLY_REVIEW_CODES code. */
  notifications: ReviewNotification[];
  /** Counts by reason over both lists (a reason names its kind: REFUND_… for refunds). */
  byReason: { reason: string; count: number }[];
  total: number;
}

/**
 * What a human must decide, most recently changed first: orders in PAYMENT_REVIEW (money taken), refunds not counted
 * (REFUND_AMOUNT_MISMATCH: a refund of more than was paid, or against another total), and the recent notifications
 * whose review outcome shows on neither (NOTIFICATION_ONLY_REVIEW_CODES), with counts by reason.
 */
export async function loadReviews(db: DbClient, reason?: string, now: Date = new Date()): Promise<Reviews> {
  // A second payment of an order in SUCCESS puts the order in review with DUPLICATE_PAYMENT: the order's row tells
  // it, and its notification is not listed again (nor counted twice).
  const duplicateOnOrder = await db.order.findMany({
    where: { status: "PAYMENT_REVIEW", reviewReason: "DUPLICATE_PAYMENT" },
    select: { outTradeNo: true },
  });
  const notificationWhere: Prisma.NotificationWhereInput = {
    status: "REVIEW",
    receivedAt: { gte: new Date(now.getTime() - NOTIFICATION_REVIEW_DAYS * 86_400_000) },
    errorCode: { in: reason ? [reason] : [...NOTIFICATION_ONLY_REVIEW_CODES] },
    NOT: { errorCode: "DUPLICATE_PAYMENT", outTradeNo: { in: duplicateOnOrder.map((o) => o.outTradeNo) } },
  };
  const [orders, refunds, notifications, orderGroups, refundGroups, notificationGroups] = await Promise.all([
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
    // A reason an order or refund carries is listed there; its notifications would only repeat it.
    reason !== undefined && !isNotificationOnly(reason)
      ? []
      : db.notification.findMany({
          where: notificationWhere,
          select: NOTIFICATION_REVIEW_SELECT,
          orderBy: [{ receivedAt: "desc" }, { id: "desc" }],
          take: REVIEW_LIMIT,
        }),
    db.order.groupBy({ by: ["reviewReason"], where: { status: "PAYMENT_REVIEW" }, _count: { _all: true } }),
    db.refund.groupBy({ by: ["reviewReason"], where: { reviewReason: { not: null } }, _count: { _all: true } }),
    db.notification.groupBy({
      by: ["errorCode"],
      where: { ...notificationWhere, errorCode: { in: [...NOTIFICATION_ONLY_REVIEW_CODES] } },
      _count: { _all: true },
    }),
  ]);
  const counts = new Map<string, number>();
  const reasons = [
    ...orderGroups.map((g) => ({ reason: g.reviewReason, count: g._count._all })),
    ...refundGroups.map((g) => ({ reason: g.reviewReason, count: g._count._all })),
    ...notificationGroups.map((g) => ({ reason: g.errorCode, count: g._count._all })),
  ];
  for (const { reason: r, count } of reasons) {
    const key = r ?? "(none)";
    counts.set(key, (counts.get(key) ?? 0) + count);
  }
  const byReason = [...counts].map(([r, count]) => ({ reason: r, count })).sort((a, b) => b.count - a.count);
  return { orders, refunds, notifications, byReason, total: byReason.reduce((sum, g) => sum + g.count, 0) };
}

function isNotificationOnly(code: string): boolean {
  return (NOTIFICATION_ONLY_REVIEW_CODES as readonly string[]).includes(code);
}
