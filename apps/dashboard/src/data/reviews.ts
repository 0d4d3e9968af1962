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
   * Whose refund: a refund is recorded only on the order of the merchant and sub-merchant it names (Refund's key is
   * (orderId, outRefundNo)), so the order's are the refund's; its currency is the refund's too (a Refund row
   * has none). Null for a row without an order (a nullable orderId).
   */
  order: { select: { mchid: true, subMchid: true, currency: true } },
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
 * transaction id, a second payment of an order that was not in SUCCESS (the order is not put in review), a further
 * report of the order's transaction with other facts (DUPLICATE_MISMATCH: the order keeps the first), a refund that
 * does not match its order or another refund, a refund WeChat reports abnormal (the merchant must act in WeChat's
 * merchant platform) or closed, a refund counted whose stock could not be put back (RESTOCK_OUT_OF_RANGE). TRANSACTION_MISMATCH is decided only after the unknown-order window: until then such a
 * refund is FAILED with TRANSACTION_NOT_SEEN (retried, not for review — the second charge it may refund can still be
 * delivered).
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

/** Rows shown per list (orders, refunds, notifications). */
export const REVIEW_LIMIT = 500;

/** How many things a human must decide, by reason: what /reviews counts, and the overview's "In review" card. */
export interface ReviewCounts {
  /** Counts by reason over the three lists (a reason names its kind: REFUND_… for refunds). */
  byReason: { reason: string; count: number }[];
  total: number;
}

export interface Reviews extends ReviewCounts {
  orders: ReviewOrder[];
  /**
   * Refunds recorded as WeChat reported them but not counted in their order's refundedTotal: REFUND_AMOUNT_MISMATCH,
   * and DUPLICATE_PAYMENT_REFUNDED — the refund of a second charge, whose transactionId is the one its order's
   * DUPLICATE_PAYMENT review (the order, or its notification when the order was not in SUCCESS) names.
   */
  refunds: ReviewRefund[];
  /** Notifications of the last NOTIFICATION_REVIEW_DAYS in REVIEW with a NOTIFICATION_ONLY_REVIEW_CODES code. */
  notifications: ReviewNotification[];
}

/**
 * What a human must decide, most recently changed first: orders in PAYMENT_REVIEW (money taken), refunds not counted
 * (REFUND_AMOUNT_MISMATCH: a refund of more than was paid, or against another total; DUPLICATE_PAYMENT_REFUNDED: the
 * refund of a second charge, for the human closing its DUPLICATE_PAYMENT review), and the recent notifications
 * whose review outcome shows on neither (NOTIFICATION_ONLY_REVIEW_CODES), with counts by reason (`countReviews`,
 * over all reasons whatever `reason` lists).
 */
export async function loadReviews(db: DbClient, reason?: string, now: Date = new Date()): Promise<Reviews> {
  const notificationWhere = await reviewNotificationsWhere(db, now);
  const [orders, refunds, notifications, counts] = await Promise.all([
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
          where: reason ? { ...notificationWhere, errorCode: reason } : notificationWhere,
          select: NOTIFICATION_REVIEW_SELECT,
          orderBy: [{ receivedAt: "desc" }, { id: "desc" }],
          take: REVIEW_LIMIT,
        }),
    countBy(db, notificationWhere),
  ]);
  return { orders, refunds, notifications, ...counts };
}

/**
 * The counts /reviews shows, without its lists: the overview's "In review" card, so that the card and the page
 * never disagree (the card once counted orders and refunds only, not the notifications in review).
 */
export async function countReviews(db: DbClient, now: Date = new Date()): Promise<ReviewCounts> {
  return countBy(db, await reviewNotificationsWhere(db, now));
}

/**
 * The notifications /reviews lists: in REVIEW, received within NOTIFICATION_REVIEW_DAYS, with a
 * NOTIFICATION_ONLY_REVIEW_CODES code. A second payment of an order in SUCCESS puts the order in review with
 * DUPLICATE_PAYMENT: the order's row tells it, and its notification is not listed again (nor counted twice). The
 * notification's order is its merchant's and sub-merchant's number (another merchant's order "1001" in that review
 * does not hide this one's); a partner row parsed before migration 20261202130000 records no sub-merchant and is
 * listed beside its order.
 */
async function reviewNotificationsWhere(db: DbClient, now: Date): Promise<Prisma.NotificationWhereInput> {
  const duplicateOnOrder = await db.order.findMany({
    where: { status: "PAYMENT_REVIEW", reviewReason: "DUPLICATE_PAYMENT" },
    select: { outTradeNo: true, mchid: true, subMchid: true },
  });
  return {
    status: "REVIEW",
    receivedAt: { gte: new Date(now.getTime() - NOTIFICATION_REVIEW_DAYS * 86_400_000) },
    errorCode: { in: [...NOTIFICATION_ONLY_REVIEW_CODES] },
    NOT: { errorCode: "DUPLICATE_PAYMENT", OR: duplicateOnOrder },
  };
}

/** Counts by reason of orders in PAYMENT_REVIEW, refunds not counted and the notifications `notificationWhere` selects. */
async function countBy(db: DbClient, notificationWhere: Prisma.NotificationWhereInput): Promise<ReviewCounts> {
  const [orderGroups, refundGroups, notificationGroups] = await Promise.all([
    db.order.groupBy({ by: ["reviewReason"], where: { status: "PAYMENT_REVIEW" }, _count: { _all: true } }),
    db.refund.groupBy({ by: ["reviewReason"], where: { reviewReason: { not: null } }, _count: { _all: true } }),
    db.notification.groupBy({ by: ["errorCode"], where: notificationWhere, _count: { _all: true } }),
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
  return { byReason, total: byReason.reduce((sum, g) => sum + g.count, 0) };
}

function isNotificationOnly(code: string): boolean {
  return (NOTIFICATION_ONLY_REVIEW_CODES as readonly string[]).includes(code);
}
