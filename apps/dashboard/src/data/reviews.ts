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
   * DUPLICATE_PAYMENT review (the order, or its notification when the order was not in SUCCESS) names; not once that
   * charge is refunded in full (settled, see `reviewFilters`).
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
  const { notificationWhere, refundWhere } = await reviewFilters(db, now);
  const [orders, refunds, notifications, counts] = await Promise.all([
    db.order.findMany({
      where: { status: "PAYMENT_REVIEW", ...(reason ? { reviewReason: reason } : {}) },
      select: REVIEW_SELECT,
      orderBy: [{ updatedAt: "desc" }, { id: "asc" }],
      take: REVIEW_LIMIT,
    }),
    db.refund.findMany({
      where: reason ? { ...refundWhere, reviewReason: reason } : refundWhere,
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
    countBy(db, notificationWhere, refundWhere),
  ]);
  return { orders, refunds, notifications, ...counts };
}

/**
 * The counts /reviews shows, without its lists: the overview's "In review" card, so that the card and the page
 * never disagree (the card once counted orders and refunds only, not the notifications in review).
 */
export async function countReviews(db: DbClient, now: Date = new Date()): Promise<ReviewCounts> {
  const { notificationWhere, refundWhere } = await reviewFilters(db, now);
  return countBy(db, notificationWhere, refundWhere);
}

/**
 * The notifications and refunds /reviews lists.
 *
 * Notifications: in REVIEW, received within NOTIFICATION_REVIEW_DAYS, with a NOTIFICATION_ONLY_REVIEW_CODES code. A
 * second payment of an order in SUCCESS puts the order in review with DUPLICATE_PAYMENT: the order's row tells it, and
 * its notification is not listed again (nor counted twice). The notification's order is its merchant's and
 * sub-merchant's number (another merchant's order "1001" in that review does not hide this one's); a partner row
 * parsed before migration 20261202130000 records no sub-merchant and is listed beside its order.
 *
 * Refunds: every one with a reviewReason (not counted in its order's refundedTotal).
 *
 * Neither lists a second charge refunded in full (`refundedCharges`): its DUPLICATE_PAYMENT review is settled — the
 * refund statement takes the order out of it (apps/worker README, "Refund of a second charge"), and without this its
 * notification, no longer hidden behind the order, would be listed for its 7 days; its refunds, for good.
 */
async function reviewFilters(
  db: DbClient,
  now: Date,
): Promise<{ notificationWhere: Prisma.NotificationWhereInput; refundWhere: Prisma.RefundWhereInput }> {
  const [duplicateOnOrder, settled] = await Promise.all([
    db.order.findMany({
      where: { status: "PAYMENT_REVIEW", reviewReason: "DUPLICATE_PAYMENT" },
      select: { outTradeNo: true, mchid: true, subMchid: true },
    }),
    refundedCharges(db),
  ]);
  return {
    notificationWhere: {
      status: "REVIEW",
      receivedAt: { gte: new Date(now.getTime() - NOTIFICATION_REVIEW_DAYS * 86_400_000) },
      errorCode: { in: [...NOTIFICATION_ONLY_REVIEW_CODES] },
      AND: [
        ...exceptAny({ errorCode: "DUPLICATE_PAYMENT" }, duplicateOnOrder),
        ...exceptAny(
          { errorCode: "DUPLICATE_PAYMENT" },
          settled.map((c) => ({ outTradeNo: c.outTradeNo, transactionId: c.transactionId })),
        ),
      ],
    },
    refundWhere: {
      reviewReason: { not: null },
      AND: exceptAny(
        { reviewReason: "DUPLICATE_PAYMENT_REFUNDED" },
        settled.map((c) => ({ orderId: c.orderId, transactionId: c.transactionId })),
      ),
    },
  };
}

/**
 * "Not (`common` and one of `rows`)", as a list of at most one condition: none when `rows` is empty. Prisma reads
 * `NOT: { …, OR: [] }` as NOT of `…` alone, so an empty list excluded every row matching `common` — with no order in
 * DUPLICATE_PAYMENT review, every DUPLICATE_PAYMENT notification left /reviews.
 */
function exceptAny<C extends object, R extends object>(common: C, rows: R[]): { NOT: C & { OR: R[] } }[] {
  return rows.length === 0 ? [] : [{ NOT: { ...common, OR: rows } }];
}

/**
 * The second charges refunded in full: per order and charge (Refund.transactionId), the successful
 * DUPLICATE_PAYMENT_REFUNDED refunds add up to the charge's total, the amount.total they report (the largest, should
 * two disagree) — the rule by which the refund statement closes the order's DUPLICATE_PAYMENT review. Refunds of
 * second charges are few (one per charge a payer was taken twice for).
 */
async function refundedCharges(
  db: DbClient,
): Promise<{ orderId: string; outTradeNo: string; transactionId: string }[]> {
  const groups = await db.refund.groupBy({
    by: ["orderId", "outTradeNo", "transactionId"],
    where: { reviewReason: "DUPLICATE_PAYMENT_REFUNDED", status: "SUCCESS" },
    _sum: { amountRefund: true },
    _max: { amountTotal: true },
  });
  return groups.flatMap((g) =>
    g.orderId !== null &&
    g.transactionId !== null &&
    g._max.amountTotal !== null &&
    (g._sum.amountRefund ?? 0) >= g._max.amountTotal
      ? [{ orderId: g.orderId, outTradeNo: g.outTradeNo, transactionId: g.transactionId }]
      : [],
  );
}

/** Counts by reason of orders in PAYMENT_REVIEW and of the refunds and notifications the filters select. */
async function countBy(
  db: DbClient,
  notificationWhere: Prisma.NotificationWhereInput,
  refundWhere: Prisma.RefundWhereInput,
): Promise<ReviewCounts> {
  const [orderGroups, refundGroups, notificationGroups] = await Promise.all([
    db.order.groupBy({ by: ["reviewReason"], where: { status: "PAYMENT_REVIEW" }, _count: { _all: true } }),
    db.refund.groupBy({ by: ["reviewReason"], where: refundWhere, _count: { _all: true } }),
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
