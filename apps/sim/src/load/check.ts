import { setTimeout as delay } from "node:timers/promises";
import type { Sql } from "../db.ts";
import type { LoadSet } from "./seed.ts";

/**
 * The end-to-end check of a load run against the merchant's database, after waiting for the workers:
 * - every order whose payment was acknowledged — at the first delivery or after resends — is paid (status SUCCESS);
 *   the orders never acknowledged are counted apart: paid (once) or not, both are consistent — that they were never
 *   acknowledged is a failure of delivery, which the report states on its own;
 * - stock moved exactly once: for every SKU, stock == initial − Σ quantities of the paid orders' items (every paid
 *   order of the run: one whose answer was lost was still applied, once);
 * - one PAYMENT movement per (order, SKU) of a paid order (delta = −quantity), none for the other orders.
 */

export interface DatabaseCheck {
  /** Orders whose payment notification was acknowledged at least once. */
  expectedPaid: number;
  paid: number;
  /**
   * Orders of the run no delivery of whose payment was acknowledged (never acknowledged after the resends, or never
   * sent): not required to be paid, reported apart from the check.
   */
  unacknowledgedOrders: number;
  /** Of those, orders paid anyway (applied, answer lost): not a problem, as long as it was once. */
  paidUnacknowledged: number;
  /** Count by Order.status of the run's acknowledged orders, e.g. { SUCCESS: 98, PAYMENT_REVIEW: 2 }. */
  byStatus: Record<string, number>;
  /** reviewReason counts of orders not paid. */
  reviewReasons: Record<string, number>;
  settled: boolean;
  waitedSeconds: number;
  stock: { skus: number; wrong: { sku: string; initial: number; expected: number; actual: number }[] };
  movements: { expected: number; found: number; missing: number; extra: number; wrongDelta: number };
  ok: boolean;
  problems: string[];
}

interface OrderRow {
  outTradeNo: string;
  id: string;
  status: string;
  reviewReason: string | null;
}

/** The run's orders: its merchant's (no sub-merchant), by number — another merchant may hold the same numbers. */
async function orderRows(sql: Sql, mchid: string, outTradeNos: string[]): Promise<OrderRow[]> {
  const r = await sql.query<OrderRow>(
    `SELECT "outTradeNo", "id", "status"::text AS "status", "reviewReason" FROM "Order"
     WHERE "outTradeNo" = ANY($1::text[]) AND "mchid" = $2 AND "subMchid" IS NULL`,
    [outTradeNos, mchid],
  );
  return r.rows;
}

export async function checkDatabase(
  sql: Sql,
  set: LoadSet,
  acknowledged: ReadonlySet<string>,
  opts: { settleSeconds: number; signal: AbortSignal; pollMs?: number },
): Promise<DatabaseCheck> {
  const wanted = set.orders.filter((o) => acknowledged.has(o.outTradeNo));
  const outTradeNos = wanted.map((o) => o.outTradeNo);
  const started = performance.now();
  const pollMs = opts.pollMs ?? 250;
  let rows: OrderRow[] = [];
  let settled = false;
  for (;;) {
    rows = await orderRows(sql, set.mchid, outTradeNos);
    const pending = rows.filter((r) => r.status === "NOTPAY").length + (outTradeNos.length - rows.length);
    if (pending === 0) {
      settled = true;
      break;
    }
    if (performance.now() - started >= opts.settleSeconds * 1000 || opts.signal.aborted) break;
    try {
      await delay(pollMs, undefined, { signal: opts.signal });
    } catch {
      break;
    }
  }
  const waitedSeconds = Math.round((performance.now() - started) / 100) / 10;
  const problems: string[] = [];
  const byStatus: Record<string, number> = {};
  const reviewReasons: Record<string, number> = {};
  for (const r of rows) {
    byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
    if (r.status !== "SUCCESS" && r.reviewReason)
      reviewReasons[r.reviewReason] = (reviewReasons[r.reviewReason] ?? 0) + 1;
  }
  const missingRows = outTradeNos.length - rows.length;
  if (missingRows > 0) byStatus.MISSING = missingRows;
  const paidRows = rows.filter((r) => r.status === "SUCCESS");
  const paid = paidRows.length;
  if (paid < wanted.length) {
    const notpay = byStatus.NOTPAY ?? 0;
    problems.push(
      `${paid} of ${wanted.length} acknowledged orders are paid after ${waitedSeconds} s` +
        (notpay > 0 ? ` (${notpay} still NOTPAY: nothing processed them — are the workers running?)` : ""),
    );
  }
  if (missingRows > 0) problems.push(`${missingRows} orders are not in the database`);

  // Stock and movements follow every paid order of the run, acknowledged or not: a payment applied whose answer was
  // lost (a timeout, a 5xx after the job was durable) took its stock as it should.
  const allRows = await orderRows(
    sql,
    set.mchid,
    set.orders.map((o) => o.outTradeNo),
  );
  const paidSet = new Set(allRows.filter((r) => r.status === "SUCCESS").map((r) => r.outTradeNo));
  const paidUnacknowledged = [...paidSet].filter((no) => !acknowledged.has(no)).length;
  const expectedStock = new Map(set.initialStock);
  for (const order of set.orders) {
    if (!paidSet.has(order.outTradeNo)) continue;
    for (const item of order.items) expectedStock.set(item.skuId, (expectedStock.get(item.skuId) ?? 0) - item.quantity);
  }
  const skuIds = [...expectedStock.keys()];
  const stockRows = await sql.query<{ id: string; stock: number }>(
    `SELECT "id", "stock" FROM "Sku" WHERE "id" = ANY($1::text[])`,
    [skuIds],
  );
  const actualStock = new Map(stockRows.rows.map((r) => [r.id, r.stock]));
  const wrongStock: DatabaseCheck["stock"]["wrong"] = [];
  for (const sku of skuIds) {
    const expected = expectedStock.get(sku) ?? 0;
    const actual = actualStock.get(sku);
    if (actual !== expected) {
      wrongStock.push({ sku, initial: set.initialStock.get(sku) ?? 0, expected, actual: actual ?? Number.NaN });
    }
  }
  if (wrongStock.length > 0) {
    const sample = wrongStock
      .slice(0, 3)
      .map((w) => `${w.sku}: ${w.actual} instead of ${w.expected}`)
      .join(", ");
    problems.push(
      `stock of ${wrongStock.length} of ${skuIds.length} SKUs is not initial − paid quantities (${sample})`,
    );
  }

  // Movements: exactly one PAYMENT movement per (paid order, SKU), none for unpaid orders of the run.
  const idByNo = new Map(allRows.map((r) => [r.outTradeNo, r.id]));
  const movementRows = await sql.query<{ orderId: string; skuId: string; delta: number }>(
    `SELECT "orderId", "skuId", "delta" FROM "InventoryMovement" WHERE "reason" = 'PAYMENT' AND "orderId" = ANY($1::text[])`,
    [allRows.map((r) => r.id)],
  );
  const found = new Map<string, number[]>();
  for (const m of movementRows.rows) {
    const key = `${m.orderId}|${m.skuId}`;
    found.set(key, [...(found.get(key) ?? []), m.delta]);
  }
  let expected = 0;
  let missing = 0;
  let wrongDelta = 0;
  const accounted = new Set<string>();
  for (const order of set.orders) {
    const id = idByNo.get(order.outTradeNo);
    if (id === undefined || !paidSet.has(order.outTradeNo)) continue;
    for (const item of order.items) {
      expected += 1;
      const key = `${id}|${item.skuId}`;
      accounted.add(key);
      const deltas = found.get(key) ?? [];
      if (deltas.length === 0) missing += 1;
      else if (deltas.length !== 1 || deltas[0] !== -item.quantity) wrongDelta += 1;
    }
  }
  let extra = 0;
  for (const [key, deltas] of found) if (!accounted.has(key)) extra += deltas.length;
  if (missing > 0)
    problems.push(`${missing} of ${expected} (order, SKU) pairs of paid orders have no PAYMENT movement`);
  if (wrongDelta > 0)
    problems.push(`${wrongDelta} (order, SKU) pairs have more than one movement or a delta ≠ −quantity`);
  if (extra > 0) problems.push(`${extra} PAYMENT movements belong to orders that are not paid`);

  return {
    expectedPaid: wanted.length,
    paid,
    unacknowledgedOrders: set.orders.length - wanted.length,
    paidUnacknowledged,
    byStatus,
    reviewReasons,
    settled,
    waitedSeconds,
    stock: { skus: skuIds.length, wrong: wrongStock },
    movements: { expected, found: movementRows.rows.length, missing, extra, wrongDelta },
    ok: problems.length === 0,
    problems,
  };
}
