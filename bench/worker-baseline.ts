import type { PaymentFacts, PaymentOutcome, PaymentResult } from "@wpn/db";
import type pg from "pg";

/**
 * The benchmark's baseline store for the apply stage's payments (`ApplyStore.payments`): one transaction per
 * notification, raw `pg`. The payments of a batch run at once, each as its own transaction on its own pooled
 * client (waiting in the pool's queue when it has fewer connections), just as the batch's jobs each ran their
 * own transaction before payments were group-committed. Equivalent to applying them one after another in some
 * order (two payments of one notification or order serialise on its row lock), which is all the worker needs.
 * The first failure fails the batch, as a failed statement does.
 */
export function baselinePayments(pool: pg.Pool, facts: readonly PaymentFacts[]): Promise<PaymentResult[]> {
  return Promise.all(facts.map((p) => baselinePayment(pool, p)));
}

/**
 * One payment of the baseline: the payment transaction written the obvious way with raw `pg`, one statement
 * per round trip (BEGIN; lock the notification; lock the order; read the items; lock the SKUs; UPDATE the
 * order; per item INSERT the movement and UPDATE its stock; UPDATE the notification; INSERT the event; COMMIT:
 * 11 statements for the benchmark's orders of two items), with the same rules, outcomes, rows and columns as
 * @wpn/db's `wpn_apply_payments` as of migration 20261211150000_payment_transaction_owner (the order's
 * paid* facts, DUPLICATE_MISMATCH against them — a partner payer on paidSpOpenid —, TRANSACTION_CONFLICT on another
 * order's payment or second charge, the second charge recorded under the transaction's key, a second charge reported twice
 * DUPLICATE, every DUPLICATE_PAYMENT writing its order, quantities added up in bigint, a REVIEW event naming the sub-merchant, movements and stock
 * changes paired up). Each statement takes a fresh snapshot (READ COMMITTED), so it needs no STALE answer: what
 * depends on what the order's lock holder committed (its transaction's notifications) is read after the lock.
 */
export async function baselinePayment(pool: pg.Pool, p: PaymentFacts): Promise<PaymentResult> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await run(client, p);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK");
    throw error;
  } finally {
    client.release();
  }
}

const FINAL = new Set(["APPLIED", "DUPLICATE", "REVIEW", "IGNORED"]);

/** Outcomes that write the order (status, reason, the payment's facts when it is the first): `ord` of the function. */
const WRITES_ORDER = new Set<PaymentOutcome>([
  "APPLIED",
  "OUT_OF_STOCK",
  "PAID_AFTER_CLOSE",
  "UNEXPECTED_ORDER_STATUS",
  "APPID_MISMATCH",
  "CURRENCY_MISMATCH",
  "AMOUNT_MISMATCH",
  "DUPLICATE_PAYMENT",
]);

async function run(c: pg.PoolClient, p: PaymentFacts): Promise<PaymentResult> {
  const result = (outcome: PaymentOutcome, extra: Partial<PaymentResult> = {}): PaymentResult => ({
    outcome,
    orderId: null,
    orderStatus: null,
    reviewReason: null,
    amountTotal: null,
    moved: 0,
    notificationStatus: null,
    notificationCode: null,
    appliedAt: null,
    ...extra,
  });
  const n = (
    await c.query(
      `SELECT status::text AS status, "errorCode", (extract(epoch FROM "appliedAt") * 1000)::double precision AS "appliedAt"
       FROM "Notification" WHERE id = $1 FOR UPDATE`,
      [p.notificationId],
    )
  ).rows[0] as { status: string; errorCode: string | null; appliedAt: number | null } | undefined;
  if (!n) return result("NOTIFICATION_NOT_FOUND");
  const seen = { notificationStatus: n.status, notificationCode: n.errorCode };
  // Locked whatever the notification's status, as the function's `o` is: ALREADY answers the order too.
  const o = (
    await c.query(
      `SELECT id, status::text AS status, "transactionId", mchid, appid, "subMchid", "subAppid", "amountTotal", currency, "payerOpenid",
              "paidTotal", "paidCurrency", "paidAppid", "paidSubAppid", "paidSpOpenid", "reviewReason",
              (EXISTS (SELECT 1 FROM "Order" x WHERE x."transactionId" = $2 AND x.id <> o.id)
               OR EXISTS (SELECT 1 FROM "PaymentTransaction" x WHERE x."transactionId" = $2 AND x."orderId" <> o.id))
                AS "txnElsewhere"
       FROM "Order" o WHERE "outTradeNo" = $1 AND mchid = $3 AND "subMchid" IS NOT DISTINCT FROM $4 FOR UPDATE`,
      [p.outTradeNo, p.transactionId, p.mchid, p.subMchid],
    )
  ).rows[0] as LockedOrder | undefined;
  const found = (order: LockedOrder) => ({
    orderId: order.id,
    orderStatus: order.status,
    reviewReason: order.reviewReason,
    amountTotal: order.amountTotal,
  });
  if (FINAL.has(n.status)) return result("ALREADY", { ...seen, ...(o && found(o)), appliedAt: n.appliedAt });
  if (!o) return result("ORDER_NOT_FOUND", seen);
  const base = { ...seen, ...found(o) };
  let outcome: PaymentOutcome | "CHECK_STOCK";
  if (o.txnElsewhere) outcome = "TRANSACTION_CONFLICT";
  else if (o.transactionId === p.transactionId)
    outcome = (await duplicateDiffers(c, o, p)) ? "DUPLICATE_MISMATCH" : "DUPLICATE";
  else if (o.transactionId !== null)
    outcome = (await secondChargeRecorded(c, o, p)) ? "DUPLICATE" : "DUPLICATE_PAYMENT";
  else if (o.status === "CLOSED") outcome = "PAID_AFTER_CLOSE";
  else if (o.status !== "NOTPAY") outcome = "UNEXPECTED_ORDER_STATUS";
  else if (o.appid !== p.appid || (o.subAppid !== null && o.subAppid !== p.subAppid)) outcome = "APPID_MISMATCH";
  else if (o.currency !== p.currency) outcome = "CURRENCY_MISMATCH";
  else if (o.amountTotal !== p.total) outcome = "AMOUNT_MISMATCH";
  else outcome = "CHECK_STOCK";

  let items: { sku: string; qty: number }[] = [];
  if (outcome === "CHECK_STOCK") {
    // bigint, as the function adds them up (pg answers a string): past 2^31-1 no SKU holds that many, OUT_OF_STOCK.
    items = (
      await c.query(
        `SELECT "skuId" AS sku, sum(quantity)::text AS qty FROM "OrderItem" WHERE "orderId" = $1 GROUP BY "skuId" ORDER BY "skuId"`,
        [o.id],
      )
    ).rows.map((r: { sku: string; qty: string }) => ({ sku: r.sku, qty: Number(r.qty) }));
    const stock = new Map(
      (
        await c.query(`SELECT id, stock FROM "Sku" WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE`, [
          items.map((i) => i.sku),
        ])
      ).rows.map((r: { id: string; stock: number }) => [r.id, r.stock]),
    );
    outcome = items.every((i) => (stock.get(i.sku) ?? -1) >= i.qty) ? "APPLIED" : "OUT_OF_STOCK";
  }
  let order = { status: o.status, reviewReason: o.reviewReason };
  if (WRITES_ORDER.has(outcome)) {
    // A second charge puts a SUCCESS order in review and leaves any other status and reason as they are, but writes
    // the order all the same (updatedAt); the first payment recorded on the order records what it reported (paid*).
    const keeps = outcome === "DUPLICATE_PAYMENT" && o.status !== "SUCCESS";
    const status = outcome === "APPLIED" ? "SUCCESS" : keeps ? o.status : "PAYMENT_REVIEW";
    const reason = outcome === "APPLIED" ? null : keeps ? o.reviewReason : outcome;
    order = (
      await c.query(
        `UPDATE "Order" SET status = $2::"OrderStatus", "reviewReason" = $3, "transactionId" = COALESCE("transactionId", $4),
           "paidAt" = CASE WHEN "transactionId" IS NULL THEN to_timestamp($5::bigint / 1000.0) AT TIME ZONE 'UTC' ELSE "paidAt" END,
           "payerOpenid" = CASE WHEN "transactionId" IS NULL THEN $6 ELSE "payerOpenid" END,
           "paidTotal" = CASE WHEN "transactionId" IS NULL THEN $7::int ELSE "paidTotal" END,
           "paidCurrency" = CASE WHEN "transactionId" IS NULL THEN $8 ELSE "paidCurrency" END,
           "paidAppid" = CASE WHEN "transactionId" IS NULL THEN $9 ELSE "paidAppid" END,
           "paidSubAppid" = CASE WHEN "transactionId" IS NULL THEN $10 ELSE "paidSubAppid" END,
           "paidSpOpenid" = CASE WHEN "transactionId" IS NULL THEN $11 ELSE "paidSpOpenid" END,
           "updatedAt" = now() AT TIME ZONE 'UTC'
         WHERE id = $1 RETURNING status::text AS status, "reviewReason"`,
        [
          o.id,
          status,
          reason,
          p.transactionId,
          p.paidAt,
          p.payerOpenid,
          p.total,
          p.currency,
          p.appid,
          p.subAppid,
          p.payerSpOpenid,
        ],
      )
    ).rows[0];
  }
  // A second charge is recorded under the transaction's key (the order's own payment is, by the trigger on
  // Order."transactionId"), unless it already is this order's.
  if (outcome === "DUPLICATE_PAYMENT") {
    await c.query(
      `INSERT INTO "PaymentTransaction" ("transactionId", "orderId", "secondCharge", "total")
       SELECT $1, $2, true, $3::int WHERE NOT EXISTS (
         SELECT 1 FROM "PaymentTransaction" WHERE "transactionId" = $1 AND "orderId" = $2)`,
      [p.transactionId, o.id, p.total],
    );
  }
  let moved = 0;
  let stockRows = 0;
  if (outcome === "APPLIED") {
    for (const item of items) {
      const inserted = await c.query(
        `INSERT INTO "InventoryMovement" ("skuId", "orderId", delta, reason) VALUES ($1, $2, $3, 'PAYMENT')
         ON CONFLICT ("orderId", "skuId", reason) DO NOTHING RETURNING id`,
        [item.sku, o.id, -item.qty],
      );
      if (inserted.rowCount !== 1) continue;
      moved += 1;
      // The stock locked and checked above; the CHECK constraint (stock >= 0) is the last line.
      const updated = await c.query(
        `UPDATE "Sku" SET stock = stock - $2, "updatedAt" = now() AT TIME ZONE 'UTC' WHERE id = $1`,
        [item.sku, item.qty],
      );
      stockRows += updated.rowCount ?? 0;
    }
  }
  // Every movement comes with its stock change, as the function checks: the whole payment rolls back otherwise.
  if (stockRows !== moved) {
    throw new Error(
      `payment of notification ${p.notificationId} recorded ${moved} movements but changed ${stockRows} stock rows`,
    );
  }
  const nStatus = outcome === "APPLIED" ? "APPLIED" : outcome === "DUPLICATE" ? "DUPLICATE" : "REVIEW";
  const applied = (
    await c.query(
      `UPDATE "Notification" SET status = $2::"NotificationStatus", "errorCode" = $3, "lastError" = NULL, attempts = attempts + 1,
         "appliedAt" = now() AT TIME ZONE 'UTC', "updatedAt" = now() AT TIME ZONE 'UTC', "outTradeNo" = $4, "transactionId" = $5
       WHERE id = $1 RETURNING (extract(epoch FROM "appliedAt") * 1000)::double precision AS "appliedAt"`,
      [p.notificationId, nStatus, nStatus === "REVIEW" ? outcome : null, p.outTradeNo, p.transactionId],
    )
  ).rows[0] as { appliedAt: number };
  // Partner mode: a review names the sub-merchant the payment names.
  const detail = {
    outcome,
    orderId: o.id,
    movedSkus: moved,
    ...(nStatus === "REVIEW" && p.subMchid !== null ? { subMchid: p.subMchid } : {}),
  };
  await c.query(
    `INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail) VALUES ($1, now() AT TIME ZONE 'UTC', $2, $3::jsonb)`,
    [p.notificationId, nStatus, JSON.stringify(detail)],
  );
  return {
    ...base,
    outcome,
    orderStatus: order.status,
    reviewReason: order.reviewReason,
    moved,
    appliedAt: applied.appliedAt,
  };
}

/** The order row the payment locks (FOR UPDATE), with whether its transaction id is another order's. */
interface LockedOrder {
  id: string;
  status: string;
  transactionId: string | null;
  mchid: string;
  appid: string;
  subMchid: string | null;
  subAppid: string | null;
  amountTotal: number;
  currency: string;
  payerOpenid: string | null;
  paidTotal: number | null;
  paidCurrency: string | null;
  paidAppid: string | null;
  paidSubAppid: string | null;
  paidSpOpenid: string | null;
  reviewReason: string | null;
  txnElsewhere: boolean;
}

/**
 * DUPLICATE_MISMATCH's rule of wpn_apply_payments (migration 20261209110000): a report of the order's transaction is
 * compared with what its recorded payment reported (paid*); on an order paid before that migration (paidTotal null),
 * with the order's own facts unless that payment's notification is in REVIEW as not accepted, or not checked, on
 * them. The payer, when both are known, either way: a direct merchant's order's openid, a partner order's openid under
 * the provider's appid (paidSpOpenid, migration 20261211100000).
 */
async function duplicateDiffers(c: pg.PoolClient, o: LockedOrder, p: PaymentFacts): Promise<boolean> {
  const differs = (appid: string | null, subAppid: string | null, currency: string | null, total: number | null) =>
    appid !== p.appid || (subAppid !== null && subAppid !== p.subAppid) || currency !== p.currency || total !== p.total;
  const orderFacts =
    o.paidTotal !== null
      ? differs(o.paidAppid, o.paidSubAppid, o.paidCurrency, o.paidTotal)
      : differs(o.appid, o.subAppid, o.currency, o.amountTotal) && !(await firstPaymentUnconfirmed(c, p));
  const payer =
    o.subMchid === null
      ? o.payerOpenid !== null && p.payerOpenid !== null && o.payerOpenid !== p.payerOpenid
      : o.paidSpOpenid !== null && p.payerSpOpenid !== null && o.paidSpOpenid !== p.payerSpOpenid;
  return orderFacts || payer;
}

/** The order's payment (this transaction) is in REVIEW as not accepted, or not checked, on its appid, currency, amount. */
async function firstPaymentUnconfirmed(c: pg.PoolClient, p: PaymentFacts): Promise<boolean> {
  const { rows } = await c.query(
    `SELECT EXISTS (
       SELECT 1 FROM "Notification" x
       WHERE x."transactionId" = $1 AND x."outTradeNo" = $2 AND x.status = 'REVIEW'
         AND x."errorCode" IN ('APPID_MISMATCH', 'CURRENCY_MISMATCH', 'AMOUNT_MISMATCH', 'PAID_AFTER_CLOSE',
                               'UNEXPECTED_ORDER_STATUS')
     ) AS found`,
    [p.transactionId, p.outTradeNo],
  );
  return (rows[0] as { found: boolean }).found;
}

/**
 * This transaction is a second charge of the order already recorded under another notification id (its REVIEW row
 * with DUPLICATE_PAYMENT: same transaction, number, merchant and the order's sub-merchant; migration 20261209160000).
 */
async function secondChargeRecorded(c: pg.PoolClient, o: LockedOrder, p: PaymentFacts): Promise<boolean> {
  const { rows } = await c.query(
    `SELECT EXISTS (
       SELECT 1 FROM "Notification" x
       WHERE x."transactionId" = $1 AND x."outTradeNo" = $2 AND x.mchid = $3
         AND x."subMchid" IS NOT DISTINCT FROM $4 AND x.status = 'REVIEW' AND x."errorCode" = 'DUPLICATE_PAYMENT'
     ) AS found`,
    [p.transactionId, p.outTradeNo, p.mchid, o.subMchid],
  );
  return (rows[0] as { found: boolean }).found;
}
