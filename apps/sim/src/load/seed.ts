import { randomInt } from "node:crypto";
import { insertOrders, insertSkus, type OrderSpec, type SkuSpec, type Sql } from "../db.ts";

/**
 * The orders a load run pays. `seed` inserts them (plain SQL, two items on distinct SKUs per order, SKUs of
 * the run's own); `existing` reads NOTPAY orders already in the database; without a database the orders
 * exist only in the notifications (no final check is possible then).
 */

export interface LoadOrder {
  outTradeNo: string;
  amount: number;
  items: { skuId: string; quantity: number }[];
}

export interface LoadSet {
  mode: "seed" | "existing" | "none";
  runId: string;
  /**
   * The merchant whose orders these are (a direct merchant: no sub-merchant). An order number is unique per merchant
   * only: the database check reads the run's orders by merchant and number, never by number alone.
   */
  mchid: string;
  orders: LoadOrder[];
  /** Stock of every SKU involved, read (or set) before the first notification. */
  initialStock: Map<string, number>;
}

/** Price of one unit of SKU number k, fen: 1.00, 2.00, … CNY. */
function unitPrice(k: number): number {
  return 100 * (k + 1);
}

export function newRunId(now = new Date()): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let suffix = "";
  for (let i = 0; i < 4; i++) suffix += alphabet.charAt(randomInt(alphabet.length));
  return `L${now.getTime().toString(36)}${suffix}`;
}

/** Orders without a database: one item each on a notional SKU (nothing is checked). */
export function unseededOrders(count: number, runId: string, mchid: string): LoadSet {
  const orders = Array.from({ length: count }, (_, i) => ({
    outTradeNo: `${runId}-${i + 1}`,
    amount: 100 + randomInt(9_900),
    items: [],
  }));
  return { mode: "none", runId, mchid, orders, initialStock: new Map() };
}

/**
 * Inserts `skuCount` SKUs and `count` NOTPAY orders with two items each (distinct SKUs, quantity 1-3).
 * Stock per SKU defaults to 3 × count: at most 3 units per order land on one SKU, so nothing runs out.
 */
export async function seedOrders(
  sql: Sql,
  args: { count: number; runId: string; mchid: string; appid: string; skuCount: number; stock?: number },
): Promise<LoadSet> {
  const skuCount = Math.max(2, args.skuCount);
  const stock = args.stock ?? 3 * args.count;
  const skus: SkuSpec[] = Array.from({ length: skuCount }, (_, k) => ({
    id: `${args.runId}-sku-${k + 1}`,
    name: `Load SKU ${k + 1} (run ${args.runId})`,
    stock,
  }));
  const orders: (OrderSpec & LoadOrder)[] = [];
  for (let i = 0; i < args.count; i++) {
    const a = randomInt(skuCount);
    let b = randomInt(skuCount - 1);
    if (b >= a) b += 1;
    const items = [
      { skuId: skus[a]?.id as string, quantity: 1 + randomInt(3) },
      { skuId: skus[b]?.id as string, quantity: 1 + randomInt(3) },
    ];
    const amount = (items[0]?.quantity ?? 0) * unitPrice(a) + (items[1]?.quantity ?? 0) * unitPrice(b);
    orders.push({ outTradeNo: `${args.runId}-${i + 1}`, mchid: args.mchid, appid: args.appid, amount, items });
  }
  await sql.query("BEGIN");
  try {
    await insertSkus(sql, skus);
    await insertOrders(sql, orders);
    await sql.query("COMMIT");
  } catch (err) {
    await sql.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
  return {
    mode: "seed",
    runId: args.runId,
    mchid: args.mchid,
    orders: orders.map(({ outTradeNo, amount, items }) => ({ outTradeNo, amount, items })),
    initialStock: new Map(skus.map((s) => [s.id, s.stock])),
  };
}

/**
 * Up to `count` NOTPAY orders of `mchid` already in the database (oldest first), with their items and SKU stock. A
 * direct merchant's only: the simulator's notifications name no sub-merchant, so a partner order would not be theirs.
 */
export async function readExistingOrders(
  sql: Sql,
  args: { count: number; mchid: string; runId: string },
): Promise<LoadSet> {
  const found = await sql.query<{ id: string; outTradeNo: string; amountTotal: number }>(
    `SELECT "id", "outTradeNo", "amountTotal" FROM "Order"
     WHERE "status" = 'NOTPAY' AND "mchid" = $1 AND "subMchid" IS NULL ORDER BY "createdAt", "id" LIMIT $2`,
    [args.mchid, args.count],
  );
  const ids = found.rows.map((r) => r.id);
  const items = await sql.query<{ orderId: string; skuId: string; quantity: number }>(
    `SELECT "orderId", "skuId", "quantity" FROM "OrderItem" WHERE "orderId" = ANY($1::text[])`,
    [ids],
  );
  const byOrder = new Map<string, { skuId: string; quantity: number }[]>();
  for (const item of items.rows) {
    const list = byOrder.get(item.orderId) ?? [];
    list.push({ skuId: item.skuId, quantity: item.quantity });
    byOrder.set(item.orderId, list);
  }
  const skuIds = [...new Set(items.rows.map((r) => r.skuId))];
  const stock = await sql.query<{ id: string; stock: number }>(
    `SELECT "id", "stock" FROM "Sku" WHERE "id" = ANY($1::text[])`,
    [skuIds],
  );
  return {
    mode: "existing",
    runId: args.runId,
    mchid: args.mchid,
    orders: found.rows.map((r) => ({
      outTradeNo: r.outTradeNo,
      amount: r.amountTotal,
      items: byOrder.get(r.id) ?? [],
    })),
    initialStock: new Map(stock.rows.map((r) => [r.id, r.stock])),
  };
}
