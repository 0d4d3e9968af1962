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
 * order; INSERT the movements; UPDATE the stock; UPDATE the notification; INSERT the event; COMMIT), with the
 * same rules and outcomes as @wpn/db's `applyPaymentStatement`. Each statement takes a fresh snapshot (READ
 * COMMITTED), so it needs no STALE answer.
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
  if (FINAL.has(n.status)) return result("ALREADY", { ...seen, appliedAt: n.appliedAt });
  const o = (
    await c.query(
      `SELECT id, status::text AS status, "transactionId", mchid, appid, "subMchid", "subAppid", "amountTotal", currency, "payerOpenid",
              "reviewReason", EXISTS (SELECT 1 FROM "Order" x WHERE x."transactionId" = $2 AND x.id <> o.id) AS "txnElsewhere"
       FROM "Order" o WHERE "outTradeNo" = $1 AND mchid = $3 AND "subMchid" IS NOT DISTINCT FROM $4 FOR UPDATE`,
      [p.outTradeNo, p.transactionId, p.mchid, p.subMchid],
    )
  ).rows[0] as LockedOrder | undefined;
  if (!o) return result("ORDER_NOT_FOUND", seen);
  const base = {
    ...seen,
    orderId: o.id,
    orderStatus: o.status,
    reviewReason: o.reviewReason,
    amountTotal: o.amountTotal,
  };
  let outcome: PaymentOutcome | "CHECK_STOCK";
  if (o.txnElsewhere) outcome = "TRANSACTION_CONFLICT";
  else if (o.transactionId === p.transactionId) outcome = duplicateDiffers(o, p) ? "DUPLICATE_MISMATCH" : "DUPLICATE";
  else if (o.transactionId !== null) outcome = "DUPLICATE_PAYMENT";
  else if (o.status === "CLOSED") outcome = "PAID_AFTER_CLOSE";
  else if (o.status !== "NOTPAY") outcome = "UNEXPECTED_ORDER_STATUS";
  else if (o.appid !== p.appid || (o.subAppid !== null && o.subAppid !== p.subAppid)) outcome = "APPID_MISMATCH";
  else if (o.currency !== p.currency) outcome = "CURRENCY_MISMATCH";
  else if (o.amountTotal !== p.total) outcome = "AMOUNT_MISMATCH";
  else outcome = "CHECK_STOCK";

  const items = (
    await c.query(
      `SELECT "skuId" AS sku, sum(quantity)::int AS qty FROM "OrderItem" WHERE "orderId" = $1 GROUP BY "skuId" ORDER BY "skuId"`,
      [o.id],
    )
  ).rows as { sku: string; qty: number }[];
  if (outcome === "CHECK_STOCK") {
    const stock = new Map(
      (
        await c.query(`SELECT id, stock FROM "Sku" WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE`, [
          items.map((i) => i.sku),
        ])
      ).rows.map((r: { id: string; stock: number }) => [r.id, r.stock]),
    );
    outcome = items.every((i) => (stock.get(i.sku) ?? -1) >= i.qty) ? "APPLIED" : "OUT_OF_STOCK";
  }
  let moved = 0;
  let order = { status: o.status, reviewReason: o.reviewReason };
  const updatesOrder =
    outcome !== "DUPLICATE" &&
    outcome !== "DUPLICATE_MISMATCH" &&
    outcome !== "TRANSACTION_CONFLICT" &&
    (outcome !== "DUPLICATE_PAYMENT" || o.status === "SUCCESS");
  if (updatesOrder) {
    const status = outcome === "APPLIED" ? "SUCCESS" : "PAYMENT_REVIEW";
    const reason = outcome === "APPLIED" ? null : outcome;
    const fresh = o.transactionId === null;
    order = (
      await c.query(
        `UPDATE "Order" SET status = $2::"OrderStatus", "reviewReason" = $3, "transactionId" = COALESCE("transactionId", $4),
           "paidAt" = CASE WHEN $5 THEN to_timestamp($6::bigint / 1000.0) AT TIME ZONE 'UTC' ELSE "paidAt" END,
           "payerOpenid" = CASE WHEN $5 THEN $7 ELSE "payerOpenid" END, "updatedAt" = now() AT TIME ZONE 'UTC'
         WHERE id = $1 RETURNING status::text AS status, "reviewReason"`,
        [o.id, status, reason, p.transactionId, fresh, p.paidAt, p.payerOpenid],
      )
    ).rows[0];
  }
  if (outcome === "APPLIED") {
    for (const item of items) {
      const inserted = await c.query(
        `INSERT INTO "InventoryMovement" ("skuId", "orderId", delta, reason) VALUES ($1, $2, $3, 'PAYMENT')
         ON CONFLICT ("orderId", "skuId", reason) DO NOTHING RETURNING id`,
        [item.sku, o.id, -item.qty],
      );
      if (inserted.rowCount === 1) {
        await c.query(
          `UPDATE "Sku" SET stock = stock - $2, "updatedAt" = now() AT TIME ZONE 'UTC' WHERE id = $1 AND stock >= $2`,
          [item.sku, item.qty],
        );
        moved += 1;
      }
    }
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
  await c.query(
    `INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail) VALUES ($1, now() AT TIME ZONE 'UTC', $2, $3::jsonb)`,
    [p.notificationId, nStatus, JSON.stringify({ outcome, orderId: o.id, movedSkus: moved })],
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

/** Reasons of an order whose first payment was not accepted, or not checked, on its appid, currency and amount. */
const UNCONFIRMED_FACTS = new Set([
  "APPID_MISMATCH",
  "CURRENCY_MISMATCH",
  "AMOUNT_MISMATCH",
  "PAID_AFTER_CLOSE",
  "UNEXPECTED_ORDER_STATUS",
]);

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
  reviewReason: string | null;
  txnElsewhere: boolean;
}

/** DUPLICATE_MISMATCH's rule of wpn_apply_payments (migration 20261205100000): the order's transaction, other facts. */
function duplicateDiffers(
  o: Pick<LockedOrder, "appid" | "subMchid" | "subAppid" | "amountTotal" | "currency" | "payerOpenid" | "reviewReason">,
  p: PaymentFacts,
): boolean {
  const orderFacts =
    !UNCONFIRMED_FACTS.has(o.reviewReason ?? "") &&
    (o.appid !== p.appid ||
      (o.subAppid !== null && o.subAppid !== p.subAppid) ||
      o.currency !== p.currency ||
      o.amountTotal !== p.total);
  const payer =
    o.subMchid === null && o.payerOpenid !== null && p.payerOpenid !== null && o.payerOpenid !== p.payerOpenid;
  return orderFacts || payer;
}
