-- One WeChat transaction belongs to one order: a second charge is its order's too (TRANSACTION_CONFLICT).
--
-- wpn_apply_payments decided TRANSACTION_CONFLICT only on Order."transactionId" (unique, Order_transactionId_key),
-- while a second charge of an order (DUPLICATE_PAYMENT) is recorded on its notification alone. A payment of order B
-- naming a transaction already recorded as order A's second charge was therefore APPLIED (B paid, its stock taken, by
-- money WeChat reported as A's) or, B paid already, DUPLICATE_PAYMENT (one transaction a second charge of two orders);
-- and two deliveries naming one transaction for two orders — A's second charge and B's payment — decided on
-- snapshots that did not hold each other, and both committed (apps/worker/test/apply-payment.test.ts, "one
-- transaction, one order").
--
-- "PaymentTransaction" now holds every transaction a payment recorded for an order, keyed by the transaction id: the
-- order's own payment, kept by the trigger below whoever writes Order."transactionId" (the payment statement, an
-- import of paid orders), and each second charge, written by the payment statement with its DUPLICATE_PAYMENT. The
-- statement decides TRANSACTION_CONFLICT when the key names another order; a row committed after its snapshot makes
-- its insert fail on the key instead (23505 on PaymentTransaction_pkey, which classifyDbError makes a retry,
-- DB_CONFLICT, that decides TRANSACTION_CONFLICT) — a property of the key, not of two statements' timing.
-- Order_transactionId_key stays. A row goes with its order (ON DELETE CASCADE), as Order."transactionId" did.
--
-- "total" is what the payment reported (amount.total / total_fee, fen): a second charge's refunds must name it (the
-- refund statement records one naming another as REFUND_AMOUNT_MISMATCH, not toward that charge's refunds: before,
-- such a refund of part of a charge, naming its own amount as the total, closed the order's DUPLICATE_PAYMENT review
-- with the rest still owed). Null where unknown: a second charge recorded before this migration (its payment's amount
-- was not stored), an order's payment before 20261209110000 (paidTotal null) or written by hand without paidTotal.
--
-- Filled from what is recorded: every order's transaction, then the second charges (DUPLICATE_PAYMENT REVIEW rows,
-- never pruned) on the order of their number, merchant and sub-merchant — the earliest received first, none already
-- taken (data committed before this migration may hold one transaction for two orders: the first keeps it). A row
-- whose order is gone, or a partner row parsed before 20261202130000 (no sub-merchant) without an order under the
-- number, is not recorded.
--
-- The function also takes the partner payer comparison of 20261211100000_payment_partner_payer (that migration adds the
-- column "paidSpOpenid" alone): the payment recorded on a partner order keeps the payer under the provider's appid
-- (batch item sp_openid: APIv3 payer.sp_openid, APIv2 openid), and a later report of its transaction naming another is
-- DUPLICATE_MISMATCH; not compared when either side does not know it. Otherwise as in
-- 20261209160000_payment_second_charge_reported_twice: same arguments and result columns, CREATE OR REPLACE, which keeps
-- its privileges. A worker of the previous release runs it as it is.

CREATE TABLE "PaymentTransaction" (
    "transactionId" TEXT NOT NULL,
    "orderId" TEXT NOT NULL,
    "secondCharge" BOOLEAN NOT NULL,
    "total" INTEGER,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "PaymentTransaction_pkey" PRIMARY KEY ("transactionId")
);

CREATE INDEX "PaymentTransaction_orderId_idx" ON "PaymentTransaction"("orderId");

ALTER TABLE "PaymentTransaction" ADD CONSTRAINT "PaymentTransaction_orderId_fkey" FOREIGN KEY ("orderId") REFERENCES "Order"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The foreign key above holds "Order" in SHARE ROW EXCLUSIVE mode until this migration commits: no payment writes an
-- order meanwhile (every one that sets a transaction or records a second charge writes its order), so the backfill's
-- snapshot, taken after that lock, misses none, and the triggers below are in place before the next one commits.
INSERT INTO "PaymentTransaction" ("transactionId", "orderId", "secondCharge", "total")
SELECT "transactionId", id, false, "paidTotal" FROM "Order" WHERE "transactionId" IS NOT NULL;

INSERT INTO "PaymentTransaction" ("transactionId", "orderId", "secondCharge")
SELECT DISTINCT ON (x."transactionId") x."transactionId", o.id, true
FROM "Notification" x
JOIN "Order" o ON o."outTradeNo" = x."outTradeNo" AND o.mchid = x.mchid AND o."subMchid" IS NOT DISTINCT FROM x."subMchid"
WHERE x.status = 'REVIEW' AND x."errorCode" = 'DUPLICATE_PAYMENT' AND x."transactionId" IS NOT NULL
ORDER BY x."transactionId", x."receivedAt", x.id
ON CONFLICT ("transactionId") DO NOTHING;

-- The order's own transaction, whoever sets it: recorded under the key (23505 on PaymentTransaction_pkey when it is
-- another order's payment or second charge), the one it replaces (a correction by hand) released. Not again when it
-- is already this order's. SECURITY INVOKER, as the project's other functions: the role writing Order."transactionId"
-- needs SELECT, INSERT and DELETE on "PaymentTransaction".
CREATE FUNCTION wpn_order_transaction()
RETURNS trigger
LANGUAGE plpgsql
AS $wpn$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD."transactionId" IS NOT NULL THEN
    DELETE FROM "PaymentTransaction"
      WHERE "transactionId" = OLD."transactionId" AND "orderId" = OLD.id AND NOT "secondCharge";
  END IF;
  IF NEW."transactionId" IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM "PaymentTransaction" WHERE "transactionId" = NEW."transactionId" AND "orderId" = NEW.id
  ) THEN
    INSERT INTO "PaymentTransaction" ("transactionId", "orderId", "secondCharge", "total")
      VALUES (NEW."transactionId", NEW.id, false, NEW."paidTotal");
  END IF;
  RETURN NULL;
END
$wpn$;

-- Fired only when the transaction id changes (the payment statement sets it on every order it writes).
CREATE TRIGGER "Order_transaction_insert" AFTER INSERT ON "Order"
  FOR EACH ROW WHEN (NEW."transactionId" IS NOT NULL) EXECUTE FUNCTION wpn_order_transaction();
CREATE TRIGGER "Order_transaction_update" AFTER UPDATE OF "transactionId" ON "Order"
  FOR EACH ROW WHEN (NEW."transactionId" IS DISTINCT FROM OLD."transactionId") EXECUTE FUNCTION wpn_order_transaction();

CREATE OR REPLACE FUNCTION wpn_apply_payments(batch json)
RETURNS TABLE (
  out_ord bigint,
  out_outcome text,
  out_order_id text,
  out_order_status text,
  out_review_reason text,
  out_amount_total integer,
  out_moved integer,
  out_notification_status text,
  out_notification_code text,
  out_applied_at timestamp
)
LANGUAGE plpgsql
AS $wpn$
DECLARE
  item record;
  stock_rows integer;
BEGIN
  -- Every row the batch may change, locked before any payment reads: each statement below then starts after the
  -- waits, and its snapshot holds what the lock holders committed (the order's items among it; see the header). A
  -- batch of one too.
  PERFORM 1 FROM "Notification"
    WHERE id IN (SELECT b.nid FROM json_to_recordset(batch) AS b(nid text))
    ORDER BY id FOR UPDATE;
  -- An order is its merchant's number: (outTradeNo, mchid, subMchid), a null sub-merchant matching a null one. The
  -- IN on the number alone drives the plan (one probe of Order_outTradeNo_mchid_subMchid_key per number, as the
  -- IN of Order_outTradeNo_key did); on its own the EXISTS below plans as a hash join over a scan of the table.
  PERFORM 1 FROM "Order" o
    WHERE o."outTradeNo" IN (SELECT b.otn FROM json_to_recordset(batch) AS b(otn text))
      AND EXISTS (
        SELECT 1 FROM json_to_recordset(batch) AS b(otn text, mchid text, sub_mchid text)
        WHERE o."outTradeNo" = b.otn AND o.mchid = b.mchid AND o."subMchid" IS NOT DISTINCT FROM b.sub_mchid
      )
    ORDER BY id FOR UPDATE;
  PERFORM 1 FROM "Sku"
    WHERE id IN (
      SELECT oi."skuId" FROM "OrderItem" oi JOIN "Order" o ON o.id = oi."orderId"
      WHERE o."outTradeNo" IN (SELECT b.otn FROM json_to_recordset(batch) AS b(otn text))
        AND EXISTS (
          SELECT 1 FROM json_to_recordset(batch) AS b(otn text, mchid text, sub_mchid text)
          WHERE o."outTradeNo" = b.otn AND o.mchid = b.mchid AND o."subMchid" IS NOT DISTINCT FROM b.sub_mchid
        )
    )
    ORDER BY id FOR NO KEY UPDATE;
  FOR item IN
    SELECT * FROM ROWS FROM (json_to_recordset(batch) AS (
      nid text, otn text, txn text, mchid text, appid text, sub_mchid text, sub_appid text,
      total integer, currency text, openid text, sp_openid text, paid_at bigint
    )) WITH ORDINALITY AS b
    ORDER BY b.ordinality
  LOOP
    out_ord := item.ordinality;
    WITH input AS (
      SELECT item.nid AS nid, item.otn AS otn, item.txn AS txn,
             item.mchid AS mchid, item.appid AS appid, item.sub_mchid AS sub_mchid,
             item.sub_appid AS sub_appid, item.total AS total, item.currency AS currency,
             item.openid AS openid, item.sp_openid AS sp_openid,
             (to_timestamp(item.paid_at / 1000.0) AT TIME ZONE 'UTC')::timestamp(3) AS paid_at,
             (now() AT TIME ZONE 'UTC')::timestamp(3) AS at
    ),
    n AS MATERIALIZED (
      SELECT status::text AS status, "errorCode", "appliedAt" FROM "Notification" WHERE id = (SELECT nid FROM input) FOR UPDATE
    ),
    o AS MATERIALIZED (
      SELECT id, status::text AS status, "transactionId", mchid, appid, "subMchid", "subAppid", "amountTotal",
             currency, "payerOpenid", "paidTotal", "paidCurrency", "paidAppid", "paidSubAppid", "paidSpOpenid",
             "reviewReason",
             xmin::text AS version
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
    pre AS MATERIALIZED (
      SELECT CASE
        WHEN n.status IS NULL THEN 'NOTIFICATION_NOT_FOUND'
        WHEN n.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') THEN 'ALREADY'
        WHEN o.id IS NULL THEN 'ORDER_NOT_FOUND'
        WHEN o.version IS DISTINCT FROM (SELECT version FROM o_snapshot) THEN 'STALE'
        -- Order."transactionId" is unique across the deployment: this transaction is already another order's — its
        -- payment, or (PaymentTransaction, this migration) a second charge recorded for it.
        WHEN EXISTS (SELECT 1 FROM "Order" x WHERE x."transactionId" = i.txn AND x.id <> o.id)
          OR EXISTS (SELECT 1 FROM "PaymentTransaction" x WHERE x."transactionId" = i.txn AND x."orderId" <> o.id)
          THEN 'TRANSACTION_CONFLICT'
        -- The order's transaction reported with other facts than its payment was recorded with (see the header):
        -- what that payment reported (paid*), never the order's own fields, which a person may edit.
        WHEN o."transactionId" = i.txn AND (
          (o."paidTotal" IS NOT NULL
           AND (o."paidAppid" <> i.appid
                OR (o."paidSubAppid" IS NOT NULL AND o."paidSubAppid" IS DISTINCT FROM i.sub_appid)
                OR o."paidCurrency" <> i.currency OR o."paidTotal" <> i.total))
          -- Recorded before this migration (paid* null): the order's facts, unless the payment's own notification
          -- (REVIEW rows are never pruned) says it was not accepted, or not checked, on them.
          OR (o."paidTotal" IS NULL
              AND NOT EXISTS (
                SELECT 1 FROM "Notification" x
                WHERE x."transactionId" = i.txn AND x."outTradeNo" = i.otn AND x.status = 'REVIEW'
                  AND x."errorCode" IN ('APPID_MISMATCH', 'CURRENCY_MISMATCH', 'AMOUNT_MISMATCH', 'PAID_AFTER_CLOSE',
                                        'UNEXPECTED_ORDER_STATUS')
              )
              AND (o.appid <> i.appid OR (o."subAppid" IS NOT NULL AND o."subAppid" IS DISTINCT FROM i.sub_appid)
                   OR o.currency <> i.currency OR o."amountTotal" <> i.total))
          OR (o."subMchid" IS NULL AND o."payerOpenid" <> i.openid)
          -- Partner: the payer under the provider's appid, which both APIs name (v3 sp_openid, v2 openid), as the
          -- recorded payment reported it; not compared when either is unknown (orders paid before this migration).
          OR (o."subMchid" IS NOT NULL AND o."paidSpOpenid" <> i.sp_openid)
        ) THEN 'DUPLICATE_MISMATCH'
        WHEN o."transactionId" = i.txn THEN 'DUPLICATE'
        -- A second charge already recorded under another notification id (its APIv3 and APIv2 reports): the order
        -- does not carry it, its REVIEW row does (the refund statement's second charges: same transaction, number,
        -- merchant and the order's sub-merchant). REVIEW rows are never pruned; every DUPLICATE_PAYMENT writes the
        -- order, so one committed after this statement's snapshot makes it STALE, and a batch's earlier one is seen.
        WHEN o."transactionId" IS NOT NULL AND EXISTS (
          SELECT 1 FROM "Notification" x
          WHERE x."transactionId" = i.txn AND x."outTradeNo" = i.otn AND x.mchid = i.mchid
            AND x."subMchid" IS NOT DISTINCT FROM o."subMchid" AND x.status = 'REVIEW'
            AND x."errorCode" = 'DUPLICATE_PAYMENT'
        ) THEN 'DUPLICATE'
        WHEN o."transactionId" IS NOT NULL THEN 'DUPLICATE_PAYMENT'
        WHEN o.status = 'CLOSED' THEN 'PAID_AFTER_CLOSE'
        WHEN o.status <> 'NOTPAY' THEN 'UNEXPECTED_ORDER_STATUS'
        WHEN o.appid <> i.appid OR (o."subAppid" IS NOT NULL AND o."subAppid" IS DISTINCT FROM i.sub_appid) THEN 'APPID_MISMATCH'
        WHEN o.currency <> i.currency THEN 'CURRENCY_MISMATCH'
        WHEN o."amountTotal" <> i.total THEN 'AMOUNT_MISMATCH'
        ELSE 'CHECK_STOCK'
      END AS outcome
      FROM input i LEFT JOIN n ON true LEFT JOIN o ON true
    ),
    -- bigint: one SKU's quantities added up over the order's items may pass 2^31-1 (22003 on the cast to int, which
    -- failed the whole batch). No SKU holds that many (stock is an int4), so such an order is OUT_OF_STOCK below, and
    -- an APPLIED one takes at most the stock it found: its movement's delta (-qty) fits the int4 column.
    items AS MATERIALIZED (
      SELECT "skuId" AS sku_id, sum(quantity) AS qty
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
        -- A second charge puts a SUCCESS order in review and leaves any other status and reason as they are: it writes
        -- the order all the same (updatedAt), so that a refund statement waiting for the order meanwhile is STALE and
        -- decides on a snapshot that holds this charge (20261209140000).
        status = (CASE WHEN d.outcome = 'APPLIED' THEN 'SUCCESS'
                       WHEN d.outcome = 'DUPLICATE_PAYMENT' AND t.status <> 'SUCCESS' THEN t.status::text
                       ELSE 'PAYMENT_REVIEW' END)::"OrderStatus",
        "reviewReason" = CASE WHEN d.outcome = 'APPLIED' THEN NULL
                              WHEN d.outcome = 'DUPLICATE_PAYMENT' AND t.status <> 'SUCCESS' THEN t."reviewReason"
                              ELSE d.outcome END,
        "transactionId" = COALESCE(t."transactionId", i.txn),
        "paidAt" = CASE WHEN t."transactionId" IS NULL THEN i.paid_at ELSE t."paidAt" END,
        "payerOpenid" = CASE WHEN t."transactionId" IS NULL THEN i.openid ELSE t."payerOpenid" END,
        -- What the payment reported, whatever the order says: what its later reports are compared with.
        "paidTotal" = CASE WHEN t."transactionId" IS NULL THEN i.total ELSE t."paidTotal" END,
        "paidCurrency" = CASE WHEN t."transactionId" IS NULL THEN i.currency ELSE t."paidCurrency" END,
        "paidAppid" = CASE WHEN t."transactionId" IS NULL THEN i.appid ELSE t."paidAppid" END,
        "paidSubAppid" = CASE WHEN t."transactionId" IS NULL THEN i.sub_appid ELSE t."paidSubAppid" END,
        "paidSpOpenid" = CASE WHEN t."transactionId" IS NULL THEN i.sp_openid ELSE t."paidSpOpenid" END,
        "updatedAt" = i.at
      FROM d, input i
      WHERE t.id = (SELECT id FROM o)
        AND d.outcome IN ('APPLIED', 'OUT_OF_STOCK', 'PAID_AFTER_CLOSE', 'UNEXPECTED_ORDER_STATUS',
                          'APPID_MISMATCH', 'CURRENCY_MISMATCH', 'AMOUNT_MISMATCH', 'DUPLICATE_PAYMENT')
      RETURNING t.status::text AS status, t."reviewReason"
    ),
    -- A second charge is this order's transaction too: recorded under its key, which another order's payment or
    -- second charge committing meanwhile (not in this statement's snapshot) makes fail (23505, a retry that decides
    -- TRANSACTION_CONFLICT). Not again when it is already this order's (the order row lock serialises its payments).
    -- The order's own payment is recorded by the trigger on Order."transactionId".
    charge AS (
      INSERT INTO "PaymentTransaction" ("transactionId", "orderId", "secondCharge", "total")
      SELECT i.txn, (SELECT id FROM o), true, i.total FROM d, input i
      WHERE d.outcome = 'DUPLICATE_PAYMENT'
        AND NOT EXISTS (
          SELECT 1 FROM "PaymentTransaction" x WHERE x."transactionId" = i.txn AND x."orderId" = (SELECT id FROM o)
        )
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
      UPDATE "Sku" AS s SET stock = sku.stock + mv.delta, "updatedAt" = (SELECT at FROM input)
      FROM mv JOIN sku ON sku.id = mv.sku_id
      WHERE s.id = mv.sku_id
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
             -- Partner mode: a review names the sub-merchant the payment names (see the header).
             || CASE WHEN nu.status = 'REVIEW' AND i.sub_mchid IS NOT NULL
                     THEN jsonb_build_object('subMchid', i.sub_mchid) ELSE '{}'::jsonb END
      FROM nu, d, input i
    )
    SELECT d.outcome,
           (SELECT id FROM o) AS "orderId",
           COALESCE((SELECT status FROM ord), (SELECT status FROM o)) AS "orderStatus",
           CASE WHEN EXISTS (SELECT 1 FROM ord) THEN (SELECT "reviewReason" FROM ord) ELSE (SELECT "reviewReason" FROM o) END AS "reviewReason",
           (SELECT "amountTotal" FROM o) AS "amountTotal",
           (SELECT count(*)::int FROM mv) AS moved,
           (SELECT status FROM n) AS "notificationStatus",
           (SELECT "errorCode" FROM n) AS "notificationCode",
           -- When the effects were committed: now when this statement commits them, as the earlier run recorded it
           -- for ALREADY, null when nothing is committed.
           CASE WHEN d.outcome = 'ALREADY' THEN (SELECT "appliedAt" FROM n)
                WHEN EXISTS (SELECT 1 FROM nu) THEN (SELECT at FROM input) END AS "appliedAt",
           (SELECT count(*)::int FROM st) AS stock_rows
    INTO out_outcome, out_order_id, out_order_status, out_review_reason, out_amount_total, out_moved,
         out_notification_status, out_notification_code, out_applied_at, stock_rows
    FROM d;
    -- Every movement comes with its stock change. Cannot fail with the rules above; if it ever did, the whole
    -- batch rolls back (nothing half-applied) and the jobs are retried instead of committing a drift.
    IF stock_rows <> out_moved THEN
      RAISE EXCEPTION 'payment of notification % recorded % movements but changed % stock rows',
        item.nid, out_moved, stock_rows USING ERRCODE = 'internal_error';
    END IF;
    RETURN NEXT;
  END LOOP;
END
$wpn$;
