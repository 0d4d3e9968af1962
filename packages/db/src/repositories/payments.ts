import { Prisma, type PrismaClient } from "../generated/client.ts";

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
  /** `success_time` (v3) / `time_end` (v2), ms since the epoch. */
  paidAt: number;
}

/**
 * What the payment statement decided. The order of the checks is the order below:
 * - NOTIFICATION_NOT_FOUND: no Notification row (the parse stage writes it first); nothing done.
 * - ALREADY: this notification's effects were committed before (a re-run job); nothing done.
 * - ORDER_NOT_FOUND: no order with this out_trade_no (yet); nothing done, the caller retries.
 * - STALE: the order changed after the statement's snapshot was taken; nothing done, run it again.
 * - DUPLICATE: the order already carries this transaction (another notification id for the same payment).
 * - DUPLICATE_PAYMENT: the order was paid by a different transaction; the order goes to review if it was
 *   SUCCESS, and keeps its first transaction.
 * - PAID_AFTER_CLOSE, UNEXPECTED_ORDER_STATUS, MCHID_MISMATCH, APPID_MISMATCH, CURRENCY_MISMATCH,
 *   AMOUNT_MISMATCH, OUT_OF_STOCK: PAYMENT_REVIEW with that reviewReason; the payment (transaction id, time,
 *   payer) is recorded because the money was taken; no stock moves.
 * - APPLIED: SUCCESS, stock taken for every item.
 */
export const PAYMENT_OUTCOMES = [
  "NOTIFICATION_NOT_FOUND",
  "ALREADY",
  "ORDER_NOT_FOUND",
  "STALE",
  "DUPLICATE",
  "DUPLICATE_PAYMENT",
  "PAID_AFTER_CLOSE",
  "UNEXPECTED_ORDER_STATUS",
  "MCHID_MISMATCH",
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
  "MCHID_MISMATCH",
  "APPID_MISMATCH",
  "CURRENCY_MISMATCH",
  "AMOUNT_MISMATCH",
  "OUT_OF_STOCK",
]);
export type PaymentOutcome = (typeof PAYMENT_OUTCOMES)[number];

export interface PaymentResult {
  outcome: PaymentOutcome;
  orderId: string | null;
  /** Order status after the statement (or as found, when nothing changed). */
  orderStatus: string | null;
  reviewReason: string | null;
  /** Order total, fen. */
  amountTotal: number | null;
  /** Inventory movements created by this statement (one per SKU; each came with its stock decrement). */
  moved: number;
  /** Notification status before the statement (for ALREADY: what the earlier run decided). */
  notificationStatus: string | null;
  /** Notification errorCode before the statement (for ALREADY: the review reason an earlier run recorded). */
  notificationCode: string | null;
}

/**
 * Applies a payment in ONE statement (one round trip, one implicit transaction). Correctness under
 * concurrency comes from row locks taken in a fixed order — Notification, then Order, then the order's SKUs
 * by id — and from the unique key of InventoryMovement, never from a lock that can expire:
 * - `FOR UPDATE` on the notification serialises two workers running the same job; the second sees ALREADY.
 * - `FOR UPDATE` on the order serialises different notifications of the same payment; the second sees the
 *   first one's transaction id (DUPLICATE). In READ COMMITTED a locking read returns the newest version of
 *   the row, while plain reads in the same statement see the older snapshot; when the order changed after
 *   the snapshot the statement does nothing and answers STALE, and the caller runs it again at once.
 * - `FOR NO KEY UPDATE` on the SKUs, sorted by id (no deadlock between orders sharing SKUs), makes the
 *   stock check and the decrement see the same values: all items are taken or none (OUT_OF_STOCK).
 * - A movement row is inserted ON CONFLICT DO NOTHING and the stock changes only for rows actually
 *   inserted, so stock and movements cannot drift apart even if everything above were bypassed. The
 *   `stock + delta >= 0` guard cannot fail while the lock is held; the CHECK constraint is the last line.
 */
export async function applyPaymentStatement(prisma: PrismaClient, p: PaymentFacts): Promise<PaymentResult> {
  const rows = await prisma.$queryRaw<PaymentResult[]>(paymentStatement(p));
  const row = rows[0];
  if (!row) throw new Error(`payment statement for notification ${p.notificationId} returned no row`);
  return row;
}

/** The statement itself (SQL text with bind parameters), for tools that run or EXPLAIN it outside Prisma. */
export function paymentStatement(p: PaymentFacts): Prisma.Sql {
  return Prisma.sql`
    WITH input AS (
      SELECT ${p.notificationId}::text AS nid, ${p.outTradeNo}::text AS otn, ${p.transactionId}::text AS txn,
             ${p.mchid}::text AS mchid, ${p.appid}::text AS appid, ${p.subMchid}::text AS sub_mchid,
             ${p.subAppid}::text AS sub_appid, ${p.total}::int AS total, ${p.currency}::text AS currency,
             ${p.payerOpenid}::text AS openid,
             (to_timestamp(${p.paidAt}::bigint / 1000.0) AT TIME ZONE 'UTC')::timestamp(3) AS paid_at,
             (now() AT TIME ZONE 'UTC')::timestamp(3) AS at
    ),
    n AS MATERIALIZED (
      SELECT status::text AS status, "errorCode" FROM "Notification" WHERE id = (SELECT nid FROM input) FOR UPDATE
    ),
    o AS MATERIALIZED (
      SELECT id, status::text AS status, "transactionId", mchid, appid, "subMchid", "subAppid", "amountTotal",
             currency, "reviewReason", xmin::text AS version
      FROM "Order"
      WHERE "outTradeNo" = (SELECT otn FROM input) AND EXISTS (SELECT 1 FROM n)
      FOR UPDATE
    ),
    o_snapshot AS (
      SELECT xmin::text AS version FROM "Order" WHERE "outTradeNo" = (SELECT otn FROM input)
    ),
    pre AS MATERIALIZED (
      SELECT CASE
        WHEN n.status IS NULL THEN 'NOTIFICATION_NOT_FOUND'
        WHEN n.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') THEN 'ALREADY'
        WHEN o.id IS NULL THEN 'ORDER_NOT_FOUND'
        WHEN o.version IS DISTINCT FROM (SELECT version FROM o_snapshot) THEN 'STALE'
        WHEN o."transactionId" = i.txn THEN 'DUPLICATE'
        WHEN o."transactionId" IS NOT NULL THEN 'DUPLICATE_PAYMENT'
        WHEN o.status = 'CLOSED' THEN 'PAID_AFTER_CLOSE'
        WHEN o.status <> 'NOTPAY' THEN 'UNEXPECTED_ORDER_STATUS'
        WHEN o.mchid <> i.mchid OR o."subMchid" IS DISTINCT FROM i.sub_mchid THEN 'MCHID_MISMATCH'
        WHEN o.appid <> i.appid OR (o."subAppid" IS NOT NULL AND o."subAppid" IS DISTINCT FROM i.sub_appid) THEN 'APPID_MISMATCH'
        WHEN o.currency <> i.currency THEN 'CURRENCY_MISMATCH'
        WHEN o."amountTotal" <> i.total THEN 'AMOUNT_MISMATCH'
        ELSE 'CHECK_STOCK'
      END AS outcome
      FROM input i LEFT JOIN n ON true LEFT JOIN o ON true
    ),
    items AS MATERIALIZED (
      SELECT "skuId" AS sku_id, sum(quantity)::int AS qty
      FROM "OrderItem" WHERE "orderId" = (SELECT id FROM o)
      GROUP BY "skuId"
    ),
    sku AS MATERIALIZED (
      SELECT s.id, s.stock FROM "Sku" s
      WHERE s.id IN (SELECT sku_id FROM items) AND (SELECT outcome FROM pre) = 'CHECK_STOCK'
      ORDER BY s.id
      FOR NO KEY UPDATE
    ),
    d AS MATERIALIZED (
      SELECT CASE
        WHEN p.outcome <> 'CHECK_STOCK' THEN p.outcome
        WHEN EXISTS (SELECT 1 FROM items it LEFT JOIN sku s ON s.id = it.sku_id WHERE s.stock IS NULL OR s.stock < it.qty)
          THEN 'OUT_OF_STOCK'
        ELSE 'APPLIED'
      END AS outcome
      FROM pre p
    ),
    ord AS (
      UPDATE "Order" AS t SET
        status = (CASE WHEN d.outcome = 'APPLIED' THEN 'SUCCESS' ELSE 'PAYMENT_REVIEW' END)::"OrderStatus",
        "reviewReason" = CASE WHEN d.outcome = 'APPLIED' THEN NULL ELSE d.outcome END,
        "transactionId" = COALESCE(t."transactionId", i.txn),
        "paidAt" = CASE WHEN t."transactionId" IS NULL THEN i.paid_at ELSE t."paidAt" END,
        "payerOpenid" = CASE WHEN t."transactionId" IS NULL THEN i.openid ELSE t."payerOpenid" END,
        "updatedAt" = i.at
      FROM d, input i
      WHERE t.id = (SELECT id FROM o)
        AND (d.outcome IN ('APPLIED', 'OUT_OF_STOCK', 'PAID_AFTER_CLOSE', 'UNEXPECTED_ORDER_STATUS', 'MCHID_MISMATCH',
                           'APPID_MISMATCH', 'CURRENCY_MISMATCH', 'AMOUNT_MISMATCH')
             OR (d.outcome = 'DUPLICATE_PAYMENT' AND t.status = 'SUCCESS'))
      RETURNING t.status::text AS status, t."reviewReason"
    ),
    mv AS (
      INSERT INTO "InventoryMovement" ("skuId", "orderId", delta, reason)
      SELECT it.sku_id, (SELECT id FROM o), -it.qty, 'PAYMENT' FROM items it
      WHERE (SELECT outcome FROM d) = 'APPLIED'
      ORDER BY it.sku_id
      ON CONFLICT ("orderId", "skuId", reason) DO NOTHING
      RETURNING "skuId" AS sku_id, delta
    ),
    st AS (
      UPDATE "Sku" AS s SET stock = s.stock + mv.delta, "updatedAt" = (SELECT at FROM input)
      FROM mv
      WHERE s.id = mv.sku_id AND s.stock + mv.delta >= 0
      RETURNING s.id
    ),
    nu AS (
      UPDATE "Notification" AS t SET
        status = (CASE d.outcome WHEN 'APPLIED' THEN 'APPLIED' WHEN 'DUPLICATE' THEN 'DUPLICATE' ELSE 'REVIEW' END)::"NotificationStatus",
        "errorCode" = CASE WHEN d.outcome IN ('APPLIED', 'DUPLICATE') THEN NULL ELSE d.outcome END,
        "lastError" = NULL,
        attempts = t.attempts + 1,
        "appliedAt" = i.at,
        "updatedAt" = i.at,
        "outTradeNo" = i.otn,
        "transactionId" = i.txn
      FROM d, input i
      WHERE t.id = i.nid AND d.outcome NOT IN ('NOTIFICATION_NOT_FOUND', 'ALREADY', 'ORDER_NOT_FOUND', 'STALE')
      RETURNING t.status::text AS status
    ),
    ev AS (
      INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
      SELECT i.nid, i.at, nu.status,
             jsonb_build_object('outcome', d.outcome, 'orderId', (SELECT id FROM o), 'movedSkus', (SELECT count(*) FROM mv))
      FROM nu, d, input i
    )
    SELECT d.outcome,
           (SELECT id FROM o) AS "orderId",
           COALESCE((SELECT status FROM ord), (SELECT status FROM o)) AS "orderStatus",
           CASE WHEN EXISTS (SELECT 1 FROM ord) THEN (SELECT "reviewReason" FROM ord) ELSE (SELECT "reviewReason" FROM o) END AS "reviewReason",
           (SELECT "amountTotal" FROM o) AS "amountTotal",
           (SELECT count(*)::int FROM mv) AS moved,
           (SELECT status FROM n) AS "notificationStatus",
           (SELECT "errorCode" FROM n) AS "notificationCode"
    FROM d`;
}
