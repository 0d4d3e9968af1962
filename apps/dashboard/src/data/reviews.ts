import type { DbClient } from "./audit.ts";
import {
  countReviewNotifications,
  isNotificationOnly,
  listReviewNotifications,
  type ReviewNotification,
} from "./review-notifications.ts";
import { countReviewOrders, listReviewOrders, type ReviewOrder } from "./review-orders.ts";
import { countReviewRefunds, listReviewRefunds, type ReviewRefund } from "./review-refunds.ts";

/** Rows shown per list (orders, refunds, notifications). */
export const REVIEW_LIMIT = 500;

/**
 * The reason shown, counted and linked for an order in review without one (a null reviewReason); as the `reason` to
 * list, it lists those orders. No reason the pipeline writes looks like it.
 */
export const NO_REASON = "(none)";

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
   * charge is refunded in full (settled, see `refundedInFull`).
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
  // NO_REASON: only orders are in review without a reason (a refund in review has one, a notification its code).
  const ofReason = reason === NO_REASON ? null : reason;
  const [orders, refunds, notifications, counts] = await Promise.all([
    listReviewOrders(db, REVIEW_LIMIT, ofReason),
    ofReason === null ? [] : listReviewRefunds(db, REVIEW_LIMIT, ofReason),
    // A reason an order or refund carries is listed there; its notifications would only repeat it.
    ofReason === null || (ofReason !== undefined && !isNotificationOnly(ofReason))
      ? []
      : listReviewNotifications(db, now, REVIEW_LIMIT, ofReason),
    countReviews(db, now),
  ]);
  return { orders, refunds, notifications, ...counts };
}

/**
 * Counts by reason of orders in PAYMENT_REVIEW, refunds not counted (`countReviewRefunds`) and the notifications in
 * review (`countReviewNotifications`): what /reviews counts, and the overview's "In review" card, so that the card and the
 * page never disagree (the card once counted orders and refunds only, not the notifications in review).
 */
export async function countReviews(db: DbClient, now: Date = new Date()): Promise<ReviewCounts> {
  const [orderGroups, refundGroups, notificationGroups] = await Promise.all([
    countReviewOrders(db),
    countReviewRefunds(db),
    countReviewNotifications(db, now),
  ]);
  const counts = new Map<string, number>();
  const reasons = [...orderGroups, ...refundGroups, ...notificationGroups];
  for (const { reason: r, count } of reasons) {
    const key = r ?? NO_REASON;
    counts.set(key, (counts.get(key) ?? 0) + count);
  }
  const byReason = [...counts].map(([r, count]) => ({ reason: r, count })).sort((a, b) => b.count - a.count);
  return { byReason, total: byReason.reduce((sum, g) => sum + g.count, 0) };
}
