import { Prisma, type PrismaClient } from "../generated/client.ts";

/** A refund result as WeChat reported it, decrypted and validated. Amounts in fen. */
export interface RefundFacts {
  notificationId: string;
  outTradeNo: string;
  outRefundNo: string;
  refundId: string | null;
  transactionId: string | null;
  /** `mchid`, or the service provider's `sp_mchid`. */
  mchid: string;
  subMchid: string | null;
  status: "SUCCESS" | "ABNORMAL" | "CLOSED";
  amountRefund: number;
  amountTotal: number;
  /** ms since the epoch; success only. */
  successAt: number | null;
  /** REFUND_RESTOCK_POLICY=full: a refund that completes the order's refunds puts what the payment took back. */
  restockOnFullRefund: boolean;
  /**
   * True while the job's unknown-order window lasts: a transaction that is neither the order's nor a second charge
   * recorded for it is TRANSACTION_NOT_SEEN (nothing written; the caller retries, as that charge's payment may be
   * delivered after its refund). False or absent: TRANSACTION_MISMATCH, final (REVIEW).
   */
  waitForTransaction?: boolean;
}

/**
 * What the refund statement decided, checked in this order:
 * - NOTIFICATION_NOT_FOUND, ALREADY, ORDER_NOT_FOUND, STALE: as for payments (nothing done; the order is the one of
 *   the refund's merchant, sub-merchant and out_trade_no, so another merchant's order under the same number is
 *   ORDER_NOT_FOUND, no longer MCHID_MISMATCH). STALE also when a
 *   Refund row of this order under this number was written by a transaction that committed after this statement's
 *   snapshot (its decision needs a new snapshot: DUPLICATE or REFUND_CONFLICT).
 * - SUB_MCHID_MISMATCH, decided right after ALREADY (before ORDER_NOT_FOUND): the refund's transaction is another
 *   sub-merchant's of the same merchant — an order of that merchant under another sub-merchant (or none, for the
 *   refund naming one) holds it, or the payment statement answered DUPLICATE_PAYMENT for it under another
 *   sub-merchant, or PaymentTransaction records it for an order of another sub-merchant (or a direct order: before,
 *   a direct order's second charge, whose review row names no sub-merchant, was TRANSACTION_MISMATCH). Nothing done (nothing written on either order, nor on the notification): the caller refuses the
 *   notification for good. An APIv2 refund names its sub-merchant only in the outer XML, which nothing signs, while
 *   the transaction id is inside the encrypted req_info: a genuine refund of sub-merchant A resent under B's
 *   sub_mch_id otherwise found B's order under A's out_trade_no and was recorded there (REFUND_ABNORMAL /
 *   REFUND_CLOSED on an unpaid order, DUPLICATE_PAYMENT_REFUNDED, a TRANSACTION_MISMATCH review). Known only once
 *   the transaction's payment (or second charge) is applied: before, such a copy is decided as below — a paid order
 *   of B waits (TRANSACTION_NOT_SEEN) and an unpaid one too (ORDER_NOT_PAID, whatever the refund's status), and the
 *   next attempt after that payment lands is SUB_MCHID_MISMATCH. Only within one merchant: another merchant's refund
 *   is authenticated by its own key, its sub-merchant field included (APIv3 sub_mchid is inside the signed resource).
 * - ORDER_NOT_PAID: a refund for an order whose payment has not been applied yet (out-of-order delivery), whatever
 *   its status; nothing done, the caller retries until the payment lands, and the next run compares the refund's
 *   transaction with the order's as for any refund (recorded, TRANSACTION_NOT_SEEN / _MISMATCH, or
 *   SUB_MCHID_MISMATCH). Before, a CLOSED / ABNORMAL one was recorded at once on the unpaid order (REFUND_CLOSED /
 *   REFUND_ABNORMAL) though the order did not know its transaction: another sub-merchant's refund resent under this
 *   one's unsigned APIv2 sub_mch_id was recorded there, as was this merchant's delivered before its payment.
 * - TRANSACTION_NOT_SEEN (with `waitForTransaction`): the refund's transaction is not the order's, nor a second
 *   charge of the order (below) — yet: WeChat may deliver the refund of a second charge before, or while, that charge's
 *   payment notification is applied (DUPLICATE_PAYMENT). Nothing done; the caller retries within the unknown-order
 *   window, and once it has passed runs the statement without `waitForTransaction`.
 * - TRANSACTION_MISMATCH: the same without `waitForTransaction` (the window has passed): nothing recorded, REVIEW.
 *   Also at once — with `waitForTransaction`, and before ORDER_NOT_PAID — when the snapshot shows the transaction to be
 *   another order's: a payment recorded it for another order (PaymentTransaction: that order's own payment or a second
 *   charge of it, any merchant's or sub-merchant's), or this merchant's payment statement answered DUPLICATE_PAYMENT for
 *   it under another out_trade_no; unless it is this order's own second charge too. WeChat reports
 *   one transaction for one order, so waiting could not change the verdict: before, such a refund was retried for the
 *   whole unknown-order window (an hour by default), then decided TRANSACTION_MISMATCH all the same.
 * - REFUND_CONFLICT: this order already has a refund under this out_refund_no with another amount, another total
 *   (amount.total / v2 total_fee), another refund_id or another transaction (WeChat reports one refund per
 *   out_refund_no: every delivery carries the same facts, only the status and success_time change; a refund_id or
 *   transaction one report leaves out is not compared). Before, the transaction was not compared: an ABNORMAL refund
 *   of a second charge reported SUCCESS naming the payment the order kept was counted against it, and once SUCCESS
 *   such a report was a plain DUPLICATE; nor the total: an ABNORMAL report naming another total
 *   (REFUND_AMOUNT_MISMATCH) reported SUCCESS with the order's was counted, and a SUCCESS one reported again with
 *   another total was a DUPLICATE; nothing
 *   recorded, the stored refund untouched, REVIEW. Refund rows are keyed by (order, out_refund_no) — orderId, the
 *   order of the refund's merchant, sub-merchant and out_trade_no —, so another order's refund under the same number
 *   — another merchant's, out_refund_no being unique only per merchant, even under the same out_trade_no — is a
 *   refund of its own.
 * - REFUND_ID_CONFLICT: the refund's refund_id is already another refund's (another order's, or this order's under
 *   another out_refund_no). Refund."refundId" is unique across the deployment while a tenant encrypts its refunds
 *   with its own key, so a tenant's refund of its own order can carry another tenant's refund id (or an upstream bug
 *   two refunds one id); nothing recorded, the stored refund untouched, REVIEW. Before, the insert failed on the
 *   unique index (DB_CONSTRAINT, dead-lettered on every replay). A refund committed with the same id after this
 *   statement's snapshot still fails it on the index: classifyDbError makes that a retry (DB_CONFLICT), which
 *   answers REFUND_ID_CONFLICT.
 * - DUPLICATE: this refund was already recorded with this status, or in a final one — SUCCESS, or CLOSED for a later
 *   ABNORMAL (WeChat closes a refund for good) —, with the same facts. A SUCCESS after CLOSED is recorded and counted.
 * - DUPLICATE_PAYMENT_REFUNDED: a successful refund of a second charge of the order — a transaction the payment
 *   statement answered DUPLICATE_PAYMENT for this order, whose payment.review asks for that refund. Recorded as
 *   reported (transactionId the second charge's) with reviewReason DUPLICATE_PAYMENT_REFUNDED, not counted in
 *   refundedTotal (that is what was refunded of the payment the order kept), stock left alone; notification REVIEW:
 *   it is the answer to the DUPLICATE_PAYMENT review. The refund that completes the refunds of every second charge of
 *   the order — each charge's successful DUPLICATE_PAYMENT_REFUNDED refunds add up to its total, the amount.total its
 *   refunds report — closes the order's DUPLICATE_PAYMENT review: an order in PAYMENT_REVIEW for it goes back to
 *   SUCCESS — REFUND when the payment it kept was refunded in full meanwhile (APPLIED below) —, reviewReason null
 *   (its REVIEW timeline entry says `orderReviewClosed`; the Refund rows and the second
 *   charges' REVIEW notifications stay as they are). Before, the order stayed in review for good, /reviews asking a
 *   human to refund what was refunded. Every such refund writes the order's updatedAt, so that two refunds of parts of
 *   a charge are serialised on it (the later one STALE) and the one completing it sees the others. Its total
 *   is the second charge's, so it is not compared with the order's (but with the charge's: REFUND_AMOUNT_MISMATCH). Its ABNORMAL / CLOSED notifications are
 *   REFUND_ABNORMAL / REFUND_CLOSED as for any refund (row transactionId the second charge's).
 * - REFUND_AMOUNT_MISMATCH: amount.total (v2 total_fee) is not the order's amountTotal, or a successful refund
 *   would take refundedTotal above amountTotal; for the refund of a second charge (any status), amount.total is not
 *   what that charge's payment reported (PaymentTransaction.total, migration 20261211150000; not compared for a charge
 *   recorded before it) — such a refund is not one of the charge's DUPLICATE_PAYMENT_REFUNDED refunds, so it closes
 *   no review (before, a refund of part of a charge naming its own amount as the total closed it); and a successful
 *   one that would take that charge's DUPLICATE_PAYMENT_REFUNDED refunds above its total (before, counted: it closed
 *   the review as if the charge had been refunded exactly). The refund is recorded as reported (the money left WeChat) with
 *   reviewReason REFUND_AMOUNT_MISMATCH, but refundedTotal, the order's status and stock are left alone; REVIEW.
 *   For an order in PAYMENT_REVIEW the comparison is with amountTotal too (not Order.paidTotal, unknown on orders paid before migration 20261209110000): refunds
 *   of an order paid another amount (AMOUNT_MISMATCH) therefore all land here, beside the order's own review.
 * - APPLIED: Refund row SUCCESS, refundedTotal increased, order REFUND when the refunds reach its total — except an
 *   order in PAYMENT_REVIEW for DUPLICATE_PAYMENT, which stays in that review until its second charges are refunded
 *   (then REFUND, above): before, the full refund of the payment it kept took it off /reviews with a second charge
 *   still owed —, and then, by policy, the stock the payment took is restored (movement reason REFUND) — by the refund
 *   that brings refundedTotal up to amountTotal, whatever the order's status was (another system may have set it
 *   REFUND).
 * - RESTOCK_OUT_OF_RANGE: APPLIED but for the restock, which would take some SKU's stock past 2^31-1 (Sku.stock is
 *   an int4: a shop keeping an "unlimited" SKU at the top refills it after the sale). The refund is recorded and
 *   counted as for APPLIED (the money went back), no SKU is restocked (all or nothing, as a payment takes stock), the
 *   notification is in REVIEW with the code, and its REVIEW timeline entry names those SKUs (`stockOutOfRange`) and
 *   what every SKU of the order is owed (`restockByHand`: [{ skuId, quantity }]) for a human to put the stock back;
 *   the result row carries that list too (`restockByHand`, for the refund.succeeded event). Nothing puts it back later (a re-run is ALREADY, the order's refunds are complete): by hand, with the worker
 *   README's SQL ("Stock a refund did not put back"), which writes the REFUND movements this statement would have. Before, the restock's 22003 failed the whole statement: the refund was
 *   dead-lettered as DB_DATA at its first attempt and not recorded at all.
 * - REFUND_ABNORMAL / REFUND_CLOSED: Refund row recorded with that status, no money or stock change,
 *   notification REVIEW so it is surfaced. Only on a paid order (ORDER_NOT_PAID above), with the checks above passed.
 */
export const REFUND_OUTCOMES = [
  "NOTIFICATION_NOT_FOUND",
  "ALREADY",
  "SUB_MCHID_MISMATCH",
  "ORDER_NOT_FOUND",
  "STALE",
  "ORDER_NOT_PAID",
  "TRANSACTION_NOT_SEEN",
  "TRANSACTION_MISMATCH",
  "REFUND_CONFLICT",
  "REFUND_ID_CONFLICT",
  "DUPLICATE",
  "REFUND_AMOUNT_MISMATCH",
  "DUPLICATE_PAYMENT_REFUNDED",
  "APPLIED",
  "RESTOCK_OUT_OF_RANGE",
  "REFUND_ABNORMAL",
  "REFUND_CLOSED",
] as const;
export type RefundOutcome = (typeof REFUND_OUTCOMES)[number];

export interface RefundResultRow {
  outcome: RefundOutcome;
  orderId: string | null;
  /** Order status after the statement (for ALREADY: the status now, which may be later than the committed one). */
  orderStatus: string | null;
  /** The order's reviewReason as found; not why this refund is in review (`outcome`, `notificationCode` for ALREADY). */
  reviewReason: string | null;
  /** Sum of successful refunds after the statement, fen. */
  refundedTotal: number | null;
  /** SKUs whose stock this statement restored. */
  restocked: number;
  /**
   * For RESTOCK_OUT_OF_RANGE, and for ALREADY of a refund an earlier run decided so: the stock owed — every SKU the
   * order's payment took and how much (units), sorted by skuId —, as its REVIEW timeline entry lists it
   * (`restockByHand`). Null otherwise.
   */
  restockByHand: { skuId: string; quantity: number }[] | null;
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
 * Applies a refund notification in ONE statement, with the same lock order as `applyPaymentStatement`
 * (Notification → Order → SKUs by id). Its plain reads see the snapshot taken before it waits for those locks:
 * STALE when the order changed after the snapshot, so the payment movements read for restocking (a payment writes
 * them with the order) are never missing. The second-charge reads (`charge`, `settled`) see the snapshot too, so a
 * DUPLICATE_PAYMENT committed while this statement waited for the order is told by the order's version: every one
 * writes its order (migration 20261209140000), and this statement is STALE and runs again on a new snapshot. Before,
 * one on an order already in review (charged a third time) left the order unwritten, and the full refund of the
 * second charge that waited meanwhile closed the order's DUPLICATE_PAYMENT review with the third charge not refunded.
 * A second charge committed after this statement is decided on the order it leaves (a SUCCESS order goes back to
 * review); the refund of a charge not recorded yet is TRANSACTION_NOT_SEEN, as when it is delivered before that
 * payment, which the caller's retry settles (TRANSACTION_MISMATCH only once the window has passed). Idempotency: the
 * Refund row's unique (orderId, out_refund_no) with ON CONFLICT decides whether this call moved the refund into
 * a status, and only then are money and stock touched; restock movements are unique per (order, sku, REFUND). The
 * amount checks read refundedTotal from the locked order row, which every counted refund updates, so concurrent
 * refunds of one order cannot together exceed its total.
 */
export async function applyRefundStatement(prisma: PrismaClient, r: RefundFacts): Promise<RefundResultRow> {
  const rows = await prisma.$queryRaw<RefundResultRow[]>(refundStatement(r));
  const row = rows[0];
  if (!row) throw new Error(`refund statement for notification ${r.notificationId} returned no row`);
  return row;
}

/** The statement itself (SQL text with bind parameters), for tools that run or EXPLAIN it outside Prisma. */
export function refundStatement(r: RefundFacts): Prisma.Sql {
  return Prisma.sql`
    WITH input AS (
      SELECT ${r.notificationId}::text AS nid, ${r.outTradeNo}::text AS otn, ${r.outRefundNo}::text AS orn,
             ${r.refundId}::text AS refund_id, ${r.transactionId}::text AS txn, ${r.mchid}::text AS mchid,
             ${r.subMchid}::text AS sub_mchid, ${r.status}::"RefundStatus" AS status,
             ${r.amountRefund}::int AS amount_refund, ${r.amountTotal}::int AS amount_total,
             (to_timestamp(${r.successAt}::bigint / 1000.0) AT TIME ZONE 'UTC')::timestamp(3) AS success_at,
             ${r.restockOnFullRefund}::boolean AS restock, ${r.waitForTransaction ?? false}::boolean AS wait_txn,
             (now() AT TIME ZONE 'UTC')::timestamp(3) AS at
    ),
    n AS MATERIALIZED (
      SELECT status::text AS status, "errorCode", "appliedAt" FROM "Notification" WHERE id = (SELECT nid FROM input) FOR UPDATE
    ),
    o AS MATERIALIZED (
      SELECT id, status::text AS status, "transactionId", mchid, "subMchid", "reviewReason", "amountTotal",
             "refundedTotal", xmin::text AS version
      FROM "Order"
      WHERE "outTradeNo" = (SELECT otn FROM input) AND mchid = (SELECT mchid FROM input)
        AND "subMchid" IS NOT DISTINCT FROM (SELECT sub_mchid FROM input) AND EXISTS (SELECT 1 FROM n)
      FOR UPDATE
    ),
    o_snapshot AS (
      SELECT xmin::text AS version FROM "Order"
      WHERE "outTradeNo" = (SELECT otn FROM input) AND mchid = (SELECT mchid FROM input)
        AND "subMchid" IS NOT DISTINCT FROM (SELECT sub_mchid FROM input)
    ),
    -- The second charges of the refund's transaction under this merchant: payments the payment statement answered
    -- DUPLICATE_PAYMENT (notification in REVIEW with that code, which the payment.review event asks to refund), each
    -- with the number and the sub-merchant its authenticated payment named (Notification.subMchid; null for a direct
    -- merchant, and for rows parsed before 20261202130000). One probe of Notification_transactionId_idx (the few
    -- notifications of one transaction; refund-plan.test.ts), read by charge (this number) and elsewhere (another).
    charges AS MATERIALIZED (
      SELECT x."outTradeNo", x."subMchid" FROM "Notification" x, input i
      WHERE x."transactionId" = i.txn AND x.mchid = i.mchid
        AND x.status = 'REVIEW' AND x."errorCode" = 'DUPLICATE_PAYMENT'
    ),
    -- Those under this number. That code is given only to a payment of the order it found by its merchant,
    -- sub-merchant and out_trade_no (before 20261207110002, found by the number and then checked on the merchant and
    -- sub-merchant), so the row's sub-merchant is that order's. REVIEW rows are never pruned.
    charge AS MATERIALIZED (
      SELECT c."subMchid" FROM charges c, input i WHERE c."outTradeNo" = i.otn
    ),
    -- Whether the refund's transaction is a second charge of this order: one of its own sub-merchant (a partner row
    -- parsed before 20261202130000, with none, is not taken for any sub-merchant's: TRANSACTION_MISMATCH, review).
    dup AS MATERIALIZED (
      SELECT EXISTS (
        SELECT 1 FROM charge c, o, input i
        WHERE c."subMchid" IS NOT DISTINCT FROM o."subMchid" AND o."transactionId" <> i.txn
      ) AS yes
    ),
    -- What the second charge's payment reported as its total (fen), which its refunds must name: recorded with the
    -- charge (migration 20261211150000); none for a charge recorded before it (then not compared). Read only for dup.
    charge_total AS MATERIALIZED (
      SELECT p.total FROM "PaymentTransaction" p, input i
      WHERE p."transactionId" = i.txn AND p."orderId" = (SELECT id FROM o) AND p."secondCharge"
    ),
    -- What this order's successful DUPLICATE_PAYMENT_REFUNDED refunds of the refund's transaction add up to (fen,
    -- bigint), this refund's number left out (an earlier delivery of it). Every such refund writes the order, so one
    -- committed after this statement's snapshot makes it STALE: the sum is never missing one. Read only for dup.
    charge_refunded AS MATERIALIZED (
      SELECT COALESCE(sum(r."amountRefund"::bigint), 0) AS amount FROM "Refund" r, input i
      WHERE r."orderId" = (SELECT id FROM o) AND r."transactionId" = i.txn AND r.status = 'SUCCESS'
        AND r."reviewReason" = 'DUPLICATE_PAYMENT_REFUNDED' AND r."outRefundNo" <> i.orn
    ),
    -- Whether the refund's transaction is another sub-merchant's of this merchant (SUB_MCHID_MISMATCH): the order
    -- holding it (Order_transactionId_key: at most one, set only by that sub-merchant's authenticated payment), or a
    -- second charge recorded under another sub-merchant. Read on the snapshot: a payment committing meanwhile is seen
    -- by the retry that the outcomes it leaves (TRANSACTION_NOT_SEEN, ORDER_NOT_PAID) lead to.
    foreign_txn AS MATERIALIZED (
      SELECT EXISTS (
        SELECT 1 FROM "Order" h, input i
        WHERE h."transactionId" = i.txn AND h.mchid = i.mchid AND h."subMchid" IS DISTINCT FROM i.sub_mchid
      ) OR EXISTS (
        SELECT 1 FROM charge c, input i WHERE c."subMchid" IS NOT NULL AND c."subMchid" IS DISTINCT FROM i.sub_mchid
      ) OR EXISTS (
        -- Any transaction a payment recorded for an order of this merchant under another sub-merchant — or none: a
        -- direct order's second charge, whose DUPLICATE_PAYMENT row (charge) carries no sub-merchant and so was not
        -- told from a partner row parsed before 20261202130000 (before, TRANSACTION_MISMATCH, a review naming the
        -- claimed sub-merchant's order, where that order's own payment was SUB_MCHID_MISMATCH). PaymentTransaction
        -- names the order the authenticated payment found, so its sub-merchant is known.
        SELECT 1 FROM "PaymentTransaction" p JOIN "Order" h ON h.id = p."orderId", input i
        WHERE p."transactionId" = i.txn AND h.mchid = i.mchid AND h."subMchid" IS DISTINCT FROM i.sub_mchid
      ) AS yes
    ),
    -- Whether the database already shows the refund's transaction to be another order's: WeChat reports one transaction
    -- for one order, so no payment still on its way can make it this order's own or a second charge of it, and waiting
    -- for one (TRANSACTION_NOT_SEEN, ORDER_NOT_PAID: the unknown-order window) only delayed TRANSACTION_MISMATCH.
    -- PaymentTransaction (migration 20261211150000; one probe of its primary key) names the order every payment
    -- recorded the transaction for — an order's own payment (trigger on Order."transactionId", so this covers
    -- Order_transactionId_key) and each second charge, whatever its merchant or sub-merchant: the payment statement
    -- wrote it from that order's authenticated payment, and the key makes it one order's across the deployment. Before,
    -- a second charge was read from this merchant's DUPLICATE_PAYMENT reviews alone: another merchant's, or one of this
    -- merchant's direct order under the number a sub-merchant's order has too, waited out the whole window. Also this
    -- merchant's reviews naming another of its numbers: a charge recorded before that migration that its backfill could
    -- not place (no order under the row's merchant, sub-merchant and number). One of another sub-merchant of this
    -- merchant found by foreign_txn is SUB_MCHID_MISMATCH, above. The same transaction recorded as this order's second
    -- charge too (dup) wins: it is checked first. Read on the snapshot: a payment committing meanwhile is seen by the
    -- retry the waiting outcomes lead to.
    elsewhere AS MATERIALIZED (
      SELECT EXISTS (
        SELECT 1 FROM "PaymentTransaction" p, input i
        WHERE p."transactionId" = i.txn AND p."orderId" IS DISTINCT FROM (SELECT id FROM o)
      ) OR EXISTS (SELECT 1 FROM charges c, input i WHERE c."outTradeNo" <> i.otn) AS yes
    ),
    -- This order's refund under this number, as the snapshot shows it (a row committed later is met by the upsert).
    ex AS MATERIALIZED (
      SELECT r.status::text AS status, r."refundId", r."amountRefund", r."amountTotal", r."transactionId"
      FROM "Refund" r, input i
      WHERE r."orderId" = (SELECT id FROM o) AND r."outRefundNo" = i.orn
    ),
    d AS MATERIALIZED (
      SELECT CASE
        WHEN n.status IS NULL THEN 'NOTIFICATION_NOT_FOUND'
        WHEN n.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') THEN 'ALREADY'
        -- Before the order's own state: whatever order the claimed sub-merchant has under the number, it is not this
        -- refund's (an APIv2 refund's sub_mch_id is not signed).
        WHEN (SELECT yes FROM foreign_txn) THEN 'SUB_MCHID_MISMATCH'
        WHEN o.id IS NULL THEN 'ORDER_NOT_FOUND'
        WHEN o.version IS DISTINCT FROM (SELECT version FROM o_snapshot) THEN 'STALE'
        -- Another order's transaction (elsewhere), not a second charge of this one: decided now, paid order or not —
        -- nothing the window waits for can change it.
        WHEN o."transactionId" IS DISTINCT FROM i.txn AND NOT (SELECT yes FROM dup) AND (SELECT yes FROM elsewhere)
          THEN 'TRANSACTION_MISMATCH'
        -- Whatever the refund's status: its transaction can only be compared with the order's (and a copy under
        -- another sub-merchant told apart, above) once the order's payment is applied.
        WHEN o."transactionId" IS NULL THEN 'ORDER_NOT_PAID'
        -- A transaction unknown to this order may be a second charge whose payment is yet to be applied: not decided
        -- (nothing written) while the caller may still wait for it.
        WHEN o."transactionId" IS NOT NULL AND i.txn IS NOT NULL AND o."transactionId" <> i.txn
          AND NOT (SELECT yes FROM dup) THEN CASE WHEN i.wait_txn THEN 'TRANSACTION_NOT_SEEN' ELSE 'TRANSACTION_MISMATCH' END
        -- One out_refund_no is one refund: another amount refunded or total refunded from (amount.total, the
        -- transaction's), or another refund_id or transaction when both are known, is not this one — only its status
        -- and success_time change from report to report (a refund of one transaction is never reported as another's:
        -- counting it, or calling it a DUPLICATE, would take one report's word over the other's). The out_trade_no is
        -- the order's (the row is found by it).
        WHEN ex.status IS NOT NULL AND (ex."amountRefund" <> i.amount_refund OR ex."amountTotal" <> i.amount_total
                                        OR ex."refundId" <> i.refund_id OR ex."transactionId" <> i.txn)
          THEN 'REFUND_CONFLICT'
        -- Refund."refundId" is unique across the deployment: this refund id is already another refund's.
        WHEN EXISTS (
          SELECT 1 FROM "Refund" x
          WHERE x."refundId" = i.refund_id AND (x."orderId", x."outRefundNo") IS DISTINCT FROM (o.id, i.orn)
        ) THEN 'REFUND_ID_CONFLICT'
        -- Final statuses: SUCCESS, and CLOSED for a later ABNORMAL — WeChat closes a refund for good (a new refund
        -- needs a new out_refund_no), so such a notification is late, not news. A SUCCESS after CLOSED is not in
        -- WeChat's lifecycle, but it would be WeChat's word, authenticated, that the money went back: it is recorded
        -- and counted as any SUCCESS (the upsert below moves CLOSED to SUCCESS), never dropped.
        WHEN ex.status IN ('SUCCESS', i.status::text) OR (ex.status = 'CLOSED' AND i.status <> 'SUCCESS') THEN 'DUPLICATE'
        -- A second charge's refund naming another total than that charge's payment reported: recorded, not counted
        -- toward the charge's refunds (settled below) — a refund of part of it naming its own amount as the total
        -- closed the order's review with the rest owed. Not compared when the charge's total is unknown.
        WHEN (SELECT yes FROM dup) AND i.amount_total <> (SELECT total FROM charge_total) THEN 'RECORD_UNCOUNTED'
        -- A second charge's successful refunds adding up to more than that charge took, as refundedTotal past
        -- amountTotal below for the payment the order kept: recorded, not counted toward the charge's refunds (before,
        -- counted, and the one passing the total closed the order's review). The charge's total is its payment's, or
        -- (recorded before 20261211150000) the one its refunds report, compared above with nothing.
        WHEN (SELECT yes FROM dup) AND i.status = 'SUCCESS'
          AND (SELECT amount FROM charge_refunded) + i.amount_refund
              > COALESCE((SELECT total FROM charge_total), i.amount_total)
          THEN 'RECORD_UNCOUNTED'
        -- A second charge's refund: recorded, never counted (refundedTotal is what was refunded of the payment the
        -- order kept). Its total is the second charge's (above), not compared with the order's.
        WHEN (SELECT yes FROM dup) AND i.status = 'SUCCESS' THEN 'RECORD_DUPLICATE_PAYMENT'
        WHEN (SELECT yes FROM dup) THEN 'RECORD'
        -- bigint: refundedTotal + a refund near 2^31 must compare, not overflow int4.
        WHEN i.amount_total <> o."amountTotal"
          OR (i.status = 'SUCCESS' AND o."refundedTotal"::bigint + i.amount_refund > o."amountTotal")
          THEN 'RECORD_UNCOUNTED'
        ELSE 'RECORD'
      END AS outcome
      FROM input i LEFT JOIN n ON true LEFT JOIN o ON true LEFT JOIN ex ON true
    ),
    rf AS (
      INSERT INTO "Refund" AS t
        ("outRefundNo", "refundId", "outTradeNo", "orderId", "transactionId", status, "amountRefund", "amountTotal",
         "successTime", "reviewReason", "notificationId", "updatedAt")
      SELECT i.orn, i.refund_id, i.otn, (SELECT id FROM o), i.txn, i.status, i.amount_refund, i.amount_total,
             i.success_at,
             CASE d.outcome WHEN 'RECORD_UNCOUNTED' THEN 'REFUND_AMOUNT_MISMATCH'
                            WHEN 'RECORD_DUPLICATE_PAYMENT' THEN 'DUPLICATE_PAYMENT_REFUNDED' END,
             i.nid, i.at
      FROM input i, d WHERE d.outcome IN ('RECORD', 'RECORD_UNCOUNTED', 'RECORD_DUPLICATE_PAYMENT')
      ON CONFLICT ("orderId", "outRefundNo") DO UPDATE SET
        status = EXCLUDED.status,
        "refundId" = COALESCE(EXCLUDED."refundId", t."refundId"),
        "orderId" = EXCLUDED."orderId",
        "transactionId" = COALESCE(EXCLUDED."transactionId", t."transactionId"),
        "successTime" = EXCLUDED."successTime",
        "reviewReason" = EXCLUDED."reviewReason",
        "notificationId" = EXCLUDED."notificationId",
        "updatedAt" = EXCLUDED."updatedAt"
      -- Evaluated on the row's newest version: a row committed after this statement's snapshot is changed only when
      -- it is the same refund in an earlier status, as the decision above assumed (CLOSED is earlier only to SUCCESS).
      WHERE t.status <> 'SUCCESS' AND t.status <> EXCLUDED.status AND t."amountRefund" = EXCLUDED."amountRefund"
        AND t."amountTotal" = EXCLUDED."amountTotal"
        AND (t.status <> 'CLOSED' OR EXCLUDED.status = 'SUCCESS')
        AND (t."refundId" IS NULL OR EXCLUDED."refundId" IS NULL OR t."refundId" = EXCLUDED."refundId")
        AND (t."transactionId" IS NULL OR EXCLUDED."transactionId" IS NULL
             OR t."transactionId" = EXCLUDED."transactionId")
      RETURNING t.status::text AS status
    ),
    fin AS MATERIALIZED (
      SELECT CASE
        WHEN d.outcome NOT IN ('RECORD', 'RECORD_UNCOUNTED', 'RECORD_DUPLICATE_PAYMENT') THEN d.outcome
        -- Nothing written: a row committed after the snapshot decided (this refund's concurrent delivery, or one with
        -- other facts), and a run with a new snapshot tells which (DUPLICATE or REFUND_CONFLICT).
        WHEN NOT EXISTS (SELECT 1 FROM rf) THEN 'STALE'
        WHEN d.outcome = 'RECORD_UNCOUNTED' THEN 'REFUND_AMOUNT_MISMATCH'
        WHEN d.outcome = 'RECORD_DUPLICATE_PAYMENT' THEN 'DUPLICATE_PAYMENT_REFUNDED'
        WHEN (SELECT status FROM rf) = 'SUCCESS' THEN 'APPLIED'
        WHEN (SELECT status FROM rf) = 'ABNORMAL' THEN 'REFUND_ABNORMAL'
        ELSE 'REFUND_CLOSED'
      END AS outcome
      FROM d
    ),
    -- Whether this refund of a second charge completes the refunds of every second charge of the order: each
    -- transaction the payment statement answered DUPLICATE_PAYMENT for this order (its sub-merchant's, as in charge)
    -- has successful DUPLICATE_PAYMENT_REFUNDED refunds adding up to its total — the charge's own, which its refunds
    -- report (amount.total: the second charge's; its payment's amount is not stored). This refund's row is not in
    -- the snapshot (it is written by rf, in this statement): its amount is added, and the snapshot's row under its
    -- number (an earlier ABNORMAL delivery of it) left out. Read only for such a refund.
    settled AS MATERIALIZED (
      SELECT CASE WHEN (SELECT outcome FROM fin) <> 'DUPLICATE_PAYMENT_REFUNDED' THEN false ELSE NOT EXISTS (
        SELECT 1
        FROM (
          SELECT DISTINCT x."transactionId" AS txn FROM "Notification" x, o, input i
          WHERE x."outTradeNo" = i.otn AND x.mchid = i.mchid AND x."subMchid" IS NOT DISTINCT FROM o."subMchid"
            AND x.status = 'REVIEW' AND x."errorCode" = 'DUPLICATE_PAYMENT' AND x."transactionId" <> o."transactionId"
        ) c
        CROSS JOIN LATERAL (
          SELECT sum(p.amount) AS refunded, max(p.total) AS total FROM (
            SELECT r."amountRefund"::bigint AS amount, r."amountTotal" AS total FROM "Refund" r, input i
            WHERE r."orderId" = (SELECT id FROM o) AND r."transactionId" = c.txn AND r.status = 'SUCCESS'
              AND r."reviewReason" = 'DUPLICATE_PAYMENT_REFUNDED' AND r."outRefundNo" <> i.orn
            UNION ALL
            SELECT i.amount_refund, i.amount_total FROM input i WHERE i.txn = c.txn
          ) p
        ) s
        -- A charge with no refund yet (total null), or refunded in part.
        WHERE s.total IS NULL OR s.refunded < s.total
      ) END AS yes
    ),
    -- The order's DUPLICATE_PAYMENT review is over once every second charge is refunded in full: back to SUCCESS, the
    -- status it was put in review from (the payment statement does so only for a SUCCESS order) — or REFUND when the
    -- refunds of the payment it kept are complete (refunded in full while in review: \`ord\` left it in review). An
    -- order in review for another reason, or not in review (REFUND, or in review before the second charge came),
    -- keeps its state.
    closes AS MATERIALIZED (
      SELECT (SELECT yes FROM settled) AND o.status = 'PAYMENT_REVIEW' AND o."reviewReason" = 'DUPLICATE_PAYMENT' AS yes,
             o."refundedTotal" >= o."amountTotal" AS refunded
      FROM o
    ),
    -- Every recorded refund of a second charge writes the order (updatedAt at least): a refund of another part of a
    -- second charge whose statement waited for the order's lock meanwhile is then STALE and runs again on a snapshot
    -- holding this one's row, so the refund completing the charge always sees the others.
    dup_ord AS (
      UPDATE "Order" AS t SET
        status = CASE WHEN (SELECT yes AND refunded FROM closes) THEN 'REFUND'::"OrderStatus"
                      WHEN (SELECT yes FROM closes) THEN 'SUCCESS'::"OrderStatus" ELSE t.status END,
        "reviewReason" = CASE WHEN (SELECT yes FROM closes) THEN NULL ELSE t."reviewReason" END,
        "updatedAt" = i.at
      FROM input i
      WHERE t.id = (SELECT id FROM o) AND (SELECT outcome FROM fin) = 'DUPLICATE_PAYMENT_REFUNDED'
      RETURNING t.status::text AS status
    ),
    -- Refunds reaching the total make the order REFUND — but one in review for a second charge (DUPLICATE_PAYMENT)
    -- stays in it: that charge is still owed, and /reviews lists orders in PAYMENT_REVIEW. Before, the full refund of
    -- the payment it kept took it out of review, the second charge left to its notification's 7 days on /reviews;
    -- the refund completing the second charges' refunds then makes it REFUND (dup_ord).
    ord AS (
      UPDATE "Order" AS t SET
        "refundedTotal" = t."refundedTotal" + i.amount_refund,
        status = CASE WHEN t."refundedTotal" + i.amount_refund >= t."amountTotal"
                        AND NOT (t.status = 'PAYMENT_REVIEW' AND t."reviewReason" IS NOT DISTINCT FROM 'DUPLICATE_PAYMENT')
                        THEN 'REFUND'::"OrderStatus" ELSE t.status END,
        "updatedAt" = i.at
      FROM input i
      WHERE t.id = (SELECT id FROM o) AND (SELECT outcome FROM fin) = 'APPLIED'
      RETURNING t.status::text AS status, t."refundedTotal", t."reviewReason"
    ),
    -- Restock when THIS refund brings refundedTotal up to amountTotal (o is the locked row before it), not whenever
    -- the order is REFUND after it: a status set by another system (the merchant's back office marking the order
    -- REFUND when it asks WeChat for a refund) made a partial refund put the whole order back. Once: only one refund
    -- crosses the total, and the movements' unique key holds besides.
    rsku AS MATERIALIZED (
      SELECT s.id, s.stock FROM "Sku" s
      WHERE s.id IN (SELECT "skuId" FROM "InventoryMovement" WHERE "orderId" = (SELECT id FROM o) AND reason = 'PAYMENT')
        AND (SELECT restock FROM input)
        AND (SELECT "refundedTotal" < "amountTotal" FROM o)
        AND EXISTS (SELECT 1 FROM ord WHERE ord."refundedTotal" >= (SELECT "amountTotal" FROM o))
      ORDER BY s.id
      FOR NO KEY UPDATE
    ),
    -- What goes back to each SKU (what the payment took), and whether its stock can take it: Sku.stock is an int4, and
    -- stock + n past 2^31-1 failed the whole statement (22003, a DB_DATA dead letter: the refund itself unrecorded).
    -- Compared in bigint on the locked rows (rsku: their newest version, which the UPDATE below changes).
    rback AS MATERIALIZED (
      SELECT pm."skuId" AS sku_id, -pm.delta AS qty, s.stock::bigint - pm.delta > 2147483647 AS out_of_range
      FROM "InventoryMovement" pm JOIN rsku s ON s.id = pm."skuId"
      WHERE pm."orderId" = (SELECT id FROM o) AND pm.reason = 'PAYMENT'
    ),
    -- All or nothing, as a payment takes its stock: when one SKU cannot take its restock, none is restocked.
    rmv AS (
      INSERT INTO "InventoryMovement" ("skuId", "orderId", delta, reason)
      SELECT b.sku_id, (SELECT id FROM o), b.qty, 'REFUND' FROM rback b
      WHERE NOT EXISTS (SELECT 1 FROM rback WHERE out_of_range)
      ORDER BY b.sku_id
      ON CONFLICT ("orderId", "skuId", reason) DO NOTHING
      RETURNING "skuId" AS sku_id, delta
    ),
    rst AS (
      UPDATE "Sku" AS s SET stock = s.stock + rmv.delta, "updatedAt" = (SELECT at FROM input)
      FROM rmv WHERE s.id = rmv.sku_id
      RETURNING s.id
    ),
    -- The outcome recorded: RESTOCK_OUT_OF_RANGE for a refund applied (recorded and counted: the money went back)
    -- whose restock could not be made, for a human to put the stock back.
    res AS MATERIALIZED (
      SELECT CASE WHEN f.outcome = 'APPLIED' AND EXISTS (SELECT 1 FROM rback WHERE out_of_range)
                  THEN 'RESTOCK_OUT_OF_RANGE' ELSE f.outcome END AS outcome
      FROM fin f
    ),
    -- What a refund that could not restock owes (RESTOCK_OUT_OF_RANGE), for a human to put back: every SKU the
    -- payment took and how much — none was put back (all or nothing), so the SKUs that had room are owed theirs too.
    -- For ALREADY of such a refund (a re-run deriving its event again), read again from the order's PAYMENT
    -- movements, which rback read and nothing changes: the same list in every copy of the event.
    owed AS MATERIALIZED (
      SELECT CASE
        WHEN f.outcome = 'RESTOCK_OUT_OF_RANGE'
          THEN (SELECT jsonb_agg(jsonb_build_object('skuId', sku_id, 'quantity', qty) ORDER BY sku_id) FROM rback)
        WHEN f.outcome = 'ALREADY' AND (SELECT "errorCode" FROM n) = 'RESTOCK_OUT_OF_RANGE'
          THEN (SELECT jsonb_agg(jsonb_build_object('skuId', "skuId", 'quantity', -delta) ORDER BY "skuId")
                FROM "InventoryMovement" WHERE "orderId" = (SELECT id FROM o) AND reason = 'PAYMENT')
      END AS list
      FROM res f
    ),
    nu AS (
      UPDATE "Notification" AS t SET
        status = (CASE f.outcome WHEN 'APPLIED' THEN 'APPLIED' WHEN 'DUPLICATE' THEN 'DUPLICATE' ELSE 'REVIEW' END)::"NotificationStatus",
        "errorCode" = CASE WHEN f.outcome IN ('APPLIED', 'DUPLICATE') THEN NULL ELSE f.outcome END,
        "lastError" = NULL,
        attempts = t.attempts + 1,
        "appliedAt" = i.at,
        "updatedAt" = i.at,
        "outTradeNo" = i.otn,
        "outRefundNo" = i.orn
      FROM res f, input i
      WHERE t.id = i.nid
        AND f.outcome IN ('APPLIED', 'DUPLICATE', 'REFUND_ABNORMAL', 'REFUND_CLOSED', 'TRANSACTION_MISMATCH', 'REFUND_CONFLICT',
                          'REFUND_ID_CONFLICT', 'REFUND_AMOUNT_MISMATCH', 'DUPLICATE_PAYMENT_REFUNDED',
                          'RESTOCK_OUT_OF_RANGE')
      RETURNING t.status::text AS status
    ),
    ev AS (
      INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
      SELECT i.nid, i.at, nu.status,
             jsonb_build_object('outcome', f.outcome, 'orderId', (SELECT id FROM o), 'outRefundNo', i.orn,
                                'amountRefund', i.amount_refund, 'amountTotal', i.amount_total,
                                'restockedSkus', (SELECT count(*) FROM rmv))
             -- The order's DUPLICATE_PAYMENT review this refund closed (the order's reviewReason is gone: said here).
             || CASE WHEN (SELECT yes FROM closes) THEN jsonb_build_object('orderReviewClosed', 'DUPLICATE_PAYMENT')
                     ELSE '{}'::jsonb END
             -- For the human putting the stock back: the SKUs whose stock could not take the restock, and what every
             -- SKU is owed (owed).
             || CASE WHEN f.outcome = 'RESTOCK_OUT_OF_RANGE'
                     THEN jsonb_build_object(
                            'stockOutOfRange', (SELECT jsonb_agg(sku_id ORDER BY sku_id) FROM rback WHERE out_of_range),
                            'restockByHand', (SELECT list FROM owed))
                     ELSE '{}'::jsonb END
             -- Partner mode: a review names the sub-merchant the refund names, for the human reading it (as the
             -- payment function does since 20261203120000_review_event_sub_mchid).
             || CASE WHEN nu.status = 'REVIEW' AND i.sub_mchid IS NOT NULL
                     THEN jsonb_build_object('subMchid', i.sub_mchid) ELSE '{}'::jsonb END
      FROM nu, res f, input i
    )
    SELECT f.outcome,
           (SELECT id FROM o) AS "orderId",
           COALESCE((SELECT status FROM ord), (SELECT status FROM dup_ord), (SELECT status FROM o)) AS "orderStatus",
           (SELECT "reviewReason" FROM o) AS "reviewReason",
           (SELECT "refundedTotal" FROM ord) AS "refundedTotal",
           (SELECT count(*)::int FROM rst) AS restocked,
           (SELECT list FROM owed) AS "restockByHand",
           (SELECT status FROM n) AS "notificationStatus",
           (SELECT "errorCode" FROM n) AS "notificationCode",
           (extract(epoch FROM CASE WHEN f.outcome = 'ALREADY' THEN (SELECT "appliedAt" FROM n)
                                    WHEN EXISTS (SELECT 1 FROM nu) THEN (SELECT at FROM input) END) * 1000
           )::double precision AS "appliedAt"
    FROM res f`;
}
