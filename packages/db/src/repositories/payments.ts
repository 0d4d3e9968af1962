import { Prisma, type PrismaClient } from "../generated/client.ts";
import { jsonParam } from "./json-param.ts";

/** A successful payment as WeChat reported it, already decrypted and validated. Amounts in fen. */
export interface PaymentFacts {
  notificationId: string;
  outTradeNo: string;
  transactionId: string;
  /** `mchid`, or the service provider's `sp_mchid`. */
  mchid: string;
  /** `appid`, or the service provider's `sp_appid`. */
  appid: string;
  subMchid: string | null;
  subAppid: string | null;
  total: number;
  currency: string;
  payerOpenid: string | null;
  /**
   * Partner mode: the payer's openid under the service provider's appid — APIv3 `payer.sp_openid`, APIv2 `openid` —,
   * the one payer id both APIs name for one payment (compared for DUPLICATE_MISMATCH). Null for a direct merchant.
   */
  payerSpOpenid: string | null;
  /** `success_time` (v3) / `time_end` (v2), ms since the epoch. */
  paidAt: number;
}

/**
 * What the payment statement decided. The order of the checks is the order below:
 * - NOTIFICATION_NOT_FOUND: no Notification row (the parse stage writes it first); nothing done.
 * - ALREADY: this notification's effects were committed before (a re-run job); nothing done.
 * - ORDER_NOT_FOUND: the payment's merchant has no order with this out_trade_no (yet); nothing done, the caller
 *   retries. An order is (outTradeNo, mchid, subMchid) — WeChat makes out_trade_no unique only per merchant, per
 *   sub-merchant in partner mode — so another merchant's or sub-merchant's order under the same number is not looked
 *   at: that payment's money went to its own merchant (migration 20261207110002; before, such a payment found the
 *   other's order and was MCHID_MISMATCH, a code notifications decided then keep).
 * - STALE: the order changed after the statement's snapshot was taken; nothing done, run it again.
 * - TRANSACTION_CONFLICT: the payment's transaction id is already another order's — its payment or a second charge
 *   recorded for it (PaymentTransaction, keyed by the transaction id across the deployment, migration 20261211150000:
 *   one WeChat transaction belongs to one out_trade_no; before, a second charge of order A was not looked at, and a
 *   payment of B naming it was APPLIED, or a second charge of B too). Order.transactionId is unique across the
 *   deployment too, while a tenant signs its APIv2 payments with its own key: a payment of its own order can carry
 *   another tenant's transaction id, or an upstream bug can hand two orders one id. The order is left alone
 *   (whatever its state), the notification goes to REVIEW with the code and its transaction id. Decided on what the
 *   statement's snapshot shows; an order given the same id (as its payment or a second charge) by a transaction that
 *   commits while this statement runs fails it on the unique key instead (Order_transactionId_key,
 *   PaymentTransaction_pkey), which classifyDbError makes a retry (DB_CONFLICT) that then answers
 *   TRANSACTION_CONFLICT.
 * - DUPLICATE_MISMATCH: the order already carries this transaction, but this report of it names other facts than
 *   the payment recorded on the order reported (Order.paidTotal, paidCurrency, paidAppid, paidSubAppid: written with
 *   the transaction id, never after): amount, currency, appid / sub_appid (sub_appid when the recorded one names
 *   one), or the payer when both are known: for a direct merchant's order its openid, in partner mode its openid
 *   under the provider's appid (Order.paidSpOpenid: APIv3 sp_openid, APIv2 openid; migration 20261211100000 —
 *   before, a partner payer was never compared, as payerOpenid holds APIv3's sub_openid but APIv2's openid). paidAt is not compared. Never the order's own amount, appid or reviewReason, which a person edits when settling a review:
 *   a further report of a payment applied once stays DUPLICATE whatever was done to the order since (migration
 *   20261209110000; an order paid before it records none of these, and is compared on its own facts unless its
 *   payment's notification is in REVIEW as APPID_, CURRENCY_, AMOUNT_MISMATCH, PAID_AFTER_CLOSE or
 *   UNEXPECTED_ORDER_STATUS). Two signed reports of one transaction disagree: the order is left alone (the money and
 *   stock were applied once), the notification goes to REVIEW with the code. Not AMOUNT_MISMATCH & co.: those put
 *   the order in review on its first payment, while this one changes nothing on the order (migration 20261205100000).
 * - DUPLICATE: the order already carries this transaction (another notification id for the same payment), with
 *   the facts its payment was recorded with; or the transaction is a second charge of the order already recorded
 *   under another notification id (its REVIEW row with DUPLICATE_PAYMENT, as the refund statement finds second
 *   charges), whose facts are not compared: one review per charge (migration 20261209160000).
 * - DUPLICATE_PAYMENT: the order was paid by a different transaction; the order goes to review if it was
 *   SUCCESS, and keeps its first transaction.
 * - PAID_AFTER_CLOSE, UNEXPECTED_ORDER_STATUS, APPID_MISMATCH, CURRENCY_MISMATCH, AMOUNT_MISMATCH, OUT_OF_STOCK:
 *   PAYMENT_REVIEW with that reviewReason; the payment (transaction id, time, payer, and what it reported) is
 *   recorded because the money was taken; no stock moves.
 * - APPLIED: SUCCESS, stock taken for every item.
 */
export const PAYMENT_OUTCOMES = [
  "NOTIFICATION_NOT_FOUND",
  "ALREADY",
  "ORDER_NOT_FOUND",
  "STALE",
  "TRANSACTION_CONFLICT",
  "DUPLICATE_MISMATCH",
  "DUPLICATE",
  "DUPLICATE_PAYMENT",
  "PAID_AFTER_CLOSE",
  "UNEXPECTED_ORDER_STATUS",
  "APPID_MISMATCH",
  "CURRENCY_MISMATCH",
  "AMOUNT_MISMATCH",
  "OUT_OF_STOCK",
  "APPLIED",
] as const;

/**
 * Outcomes the statement records as REVIEW (the order, or at least the notification, needs a human). The
 * statement's CASE expressions are the authority; this list mirrors them for metrics, logs and events.
 */
export const PAYMENT_REVIEW_OUTCOMES: ReadonlySet<PaymentOutcome> = new Set<PaymentOutcome>([
  "DUPLICATE_PAYMENT",
  "PAID_AFTER_CLOSE",
  "UNEXPECTED_ORDER_STATUS",
  "TRANSACTION_CONFLICT",
  "DUPLICATE_MISMATCH",
  "APPID_MISMATCH",
  "CURRENCY_MISMATCH",
  "AMOUNT_MISMATCH",
  "OUT_OF_STOCK",
]);
export type PaymentOutcome = (typeof PAYMENT_OUTCOMES)[number];

export interface PaymentResult {
  outcome: PaymentOutcome;
  orderId: string | null;
  /**
   * Order status after the statement (or as found, when nothing changed): for ALREADY, the status now, which may
   * be later than the one the earlier run committed.
   */
  orderStatus: string | null;
  /**
   * The order's reviewReason after the statement (or as found). Not why this payment is in review: a payment whose
   * code the statement does not put on the order (DUPLICATE_PAYMENT on an order not SUCCESS, TRANSACTION_CONFLICT,
   * DUPLICATE_MISMATCH) leaves the order's own reason, or none; the payment's code is `outcome`
   * (`notificationCode` for ALREADY).
   */
  reviewReason: string | null;
  /** Order total, fen. */
  amountTotal: number | null;
  /** Inventory movements created by this statement (one per SKU; each came with its stock decrement). */
  moved: number;
  /** Notification status before the statement (for ALREADY: what the earlier run decided). */
  notificationStatus: string | null;
  /** Notification errorCode before the statement (for ALREADY: the review reason an earlier run recorded). */
  notificationCode: string | null;
  /**
   * When the notification's effects were committed (Notification.appliedAt), ms since the epoch: this statement's
   * time when it committed them, the earlier run's for ALREADY; null when nothing was committed.
   */
  appliedAt: number | null;
}

/**
 * The rules of one payment (the SQL is the function `wpn_apply_payments`, created in
 * prisma/migrations/20261130000000_apply_payment_batch and corrected in 20261130120000_payment_stock_on_locked_row,
 * 20261130210000_payment_other_merchant_leaves_order and 20261202110000_payment_transaction_conflict, which also
 * made it answer appliedAt, 20261203120000_review_event_sub_mchid, whose REVIEW timeline entry names the
 * sub-merchant in partner mode, 20261204110000_payment_locks_before_reads, and 20261205100000_payment_duplicate_facts
 * (DUPLICATE_MISMATCH), 20261207110002_order_number_per_merchant, which finds the order by the payment's merchant,
 * sub-merchant and out_trade_no, and 20261208120000_payment_quantity_bigint, which adds up an order's quantities of one
 * SKU in bigint (past 2^31-1 the order is OUT_OF_STOCK, no longer a 22003 that dead-lettered the payment unrecorded),
 * 20261209110000_payment_recorded_facts, which records what the payment reported on the order and compares later
 * reports of its transaction with that, not with the order's fields, and 20261209140000_payment_second_charge_writes_order,
 * after which every DUPLICATE_PAYMENT writes its order (updatedAt at least: a refund statement waiting for the order
 * meanwhile is STALE, see applyRefundStatement), and 20261209160000_payment_second_charge_reported_twice, after which a
 * further report of a second charge is DUPLICATE, and 20261211150000_payment_transaction_owner (with the partner payer
 * comparison over the column of 20261211100000_payment_partner_payer), which records every transaction it gives an order — payment (by a trigger on
 * Order.transactionId) or second charge — under one key, another order's being TRANSACTION_CONFLICT; it runs them once
 * per payment of a batch).
 * Correctness under concurrency comes from row locks taken in a fixed order — Notification, then Order, then
 * the order's SKUs by id — and from the unique key of InventoryMovement, never from a lock that can expire:
 * - Every row of a batch (of one too) is locked before its first payment statement, so that statement starts
 *   after the waits and its snapshot holds what the lock holders committed. In READ COMMITTED a statement's plain
 *   reads see the snapshot taken when it starts, while a locking read inside it returns the row's newest version:
 *   a statement that waited for the order row itself would read the order's items as they were before the wait,
 *   and miss an item added or swapped by a transaction that committed meanwhile (it holds the order row locked —
 *   below — but leaves the order's version alone, so STALE cannot catch it).
 * - `FOR UPDATE` on the notification serialises two workers running the same job; the second sees ALREADY.
 * - `FOR UPDATE` on the order serialises different notifications of the same payment; the second sees the
 *   first one's transaction id (DUPLICATE, or DUPLICATE_MISMATCH when it reports other facts). When the order
 *   changed after the statement's snapshot all the same (an order committed after the up-front locks looked for it,
 *   and changed by another statement since), the statement does nothing and answers STALE, and the caller runs it
 *   again at once. Every change of an order's items locks the order row too (FOR NO KEY UPDATE, the OrderItem
 *   trigger of migration 20261206110000), whoever makes it: it waits for a payment in progress, and a payment waits
 *   for it and reads the items it committed; it is refused (23000, constraint OrderItem_stock_taken) once the
 *   order's payment took the stock, so the items stay what the PAYMENT movements were taken for. Before, an item
 *   UPDATE or DELETE took no lock on the order, and one not committed when the payment read the items was
 *   serialised after the payment, on a paid order (the payment took a swapped-out item's stock).
 * - `FOR NO KEY UPDATE` on the SKUs, sorted by id (no deadlock between orders sharing SKUs): the stock check
 *   and the new stock are both computed from the locked (newest) rows, never from the statement's snapshot,
 *   which can be older when another transaction changed the stock while this one waited for the lock. All
 *   items are taken or none (OUT_OF_STOCK).
 * - A movement row is inserted ON CONFLICT DO NOTHING and the stock changes for exactly the rows inserted,
 *   with no filter in between; a payment whose movements and stock changes do not pair up aborts the whole
 *   statement (retried, nothing committed). The CHECK constraint on the stock is the last line.
 *
 * Applies a batch of payments in ONE statement (one round trip, one transaction), with the semantics of
 * applying them one after another in the given order: a later payment sees the earlier ones' effects (the same
 * notification twice → ALREADY, two notifications of one transaction → DUPLICATE, stock taken by an earlier
 * order counts). Results in input order. The worker's apply stage group-commits concurrent jobs through this.
 */
export async function applyPaymentStatements(
  prisma: PrismaClient,
  facts: readonly PaymentFacts[],
): Promise<PaymentResult[]> {
  if (facts.length === 0) return [];
  const rows = await prisma.$queryRaw<PaymentResult[]>(paymentStatement(facts));
  if (rows.length !== facts.length) {
    throw new Error(`payment batch of ${facts.length} returned ${rows.length} rows`);
  }
  return rows;
}

/** One payment: a batch of one. */
export async function applyPaymentStatement(prisma: PrismaClient, p: PaymentFacts): Promise<PaymentResult> {
  const [row] = await applyPaymentStatements(prisma, [p]);
  if (!row) throw new Error(`payment statement for notification ${p.notificationId} returned no row`);
  return row;
}

/**
 * The statement (SQL text with one json bind parameter; the same text for every batch size, so it is prepared
 * once per connection), for tools that run or EXPLAIN it outside Prisma.
 */
export function paymentStatement(facts: readonly PaymentFacts[]): Prisma.Sql {
  const batch = jsonParam(
    facts.map((p) => ({
      nid: p.notificationId,
      otn: p.outTradeNo,
      txn: p.transactionId,
      mchid: p.mchid,
      appid: p.appid,
      sub_mchid: p.subMchid,
      sub_appid: p.subAppid,
      total: p.total,
      currency: p.currency,
      openid: p.payerOpenid,
      sp_openid: p.payerSpOpenid,
      paid_at: p.paidAt,
    })),
  );
  return Prisma.sql`
    SELECT out_outcome AS outcome, out_order_id AS "orderId", out_order_status AS "orderStatus",
           out_review_reason AS "reviewReason", out_amount_total AS "amountTotal", out_moved AS moved,
           out_notification_status AS "notificationStatus", out_notification_code AS "notificationCode",
           (extract(epoch FROM out_applied_at) * 1000)::double precision AS "appliedAt"
    FROM wpn_apply_payments(${batch}::json)
    ORDER BY out_ord`;
}
