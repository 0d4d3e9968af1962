import { randomUUID } from "node:crypto";
import pg from "pg";
import { ConnectionError, isConnectionError } from "./io.ts";

/**
 * The merchant's database, reached the way a merchant's own systems reach it: plain SQL on the documented
 * tables (`Sku`, `Order`, `OrderItem`, `InventoryMovement`). Used by `load` (seed + final check),
 * `pay --seed` and `close`.
 */

export type Sql = Pick<pg.ClientBase, "query">;

/** Opens one client; `?schema=` in the URL (Prisma's convention) becomes the search_path. */
export async function connect(url: string): Promise<pg.Client> {
  const { parseDatabaseUrl } = await import("@wpn/db");
  const target = parseDatabaseUrl(url);
  const client = new pg.Client({
    connectionString: target.connectionString,
    // UTC, as the system's own connections (packages/db): columns hold UTC without a time zone.
    options: `-c search_path="${target.schema}" -c TimeZone=UTC`,
    application_name: "wechatpay-sim",
    connectionTimeoutMillis: 5_000,
  });
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    if (isConnectionError(err)) throw new ConnectionError(`database ${redact(url)}: ${(err as Error).message}`);
    throw err;
  }
  return client;
}

/** The URL without its password — in the authority, or in pg's `?password=` — for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    if (u.searchParams.has("password")) u.searchParams.set("password", "***");
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

export interface OrderItemSpec {
  skuId: string;
  quantity: number;
}

export interface OrderSpec {
  outTradeNo: string;
  mchid: string;
  appid: string;
  amount: number;
  items: OrderItemSpec[];
}

export interface SkuSpec {
  id: string;
  name: string;
  stock: number;
}

/** Inserts SKUs; existing ids are left alone (their stock is not touched). */
export async function insertSkus(sql: Sql, skus: readonly SkuSpec[]): Promise<void> {
  if (skus.length === 0) return;
  await sql.query(
    `INSERT INTO "Sku" ("id", "name", "stock")
     SELECT * FROM unnest($1::text[], $2::text[], $3::int[])
     ON CONFLICT ("id") DO NOTHING`,
    [skus.map((s) => s.id), skus.map((s) => s.name), skus.map((s) => s.stock)],
  );
}

/** Inserts NOTPAY orders with their items, in chunks; returns nothing (outTradeNo is the key). */
export async function insertOrders(sql: Sql, orders: readonly OrderSpec[], chunk = 2_000): Promise<void> {
  for (let i = 0; i < orders.length; i += chunk) {
    const part = orders.slice(i, i + chunk);
    const ids = part.map(() => randomUUID());
    await sql.query(
      `INSERT INTO "Order" ("id", "outTradeNo", "mchid", "appid", "amountTotal")
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[])`,
      [
        ids,
        part.map((o) => o.outTradeNo),
        part.map((o) => o.mchid),
        part.map((o) => o.appid),
        part.map((o) => o.amount),
      ],
    );
    const itemOrder: string[] = [];
    const itemSku: string[] = [];
    const itemQty: number[] = [];
    part.forEach((o, k) => {
      for (const item of o.items) {
        itemOrder.push(ids[k] as string);
        itemSku.push(item.skuId);
        itemQty.push(item.quantity);
      }
    });
    await sql.query(
      `INSERT INTO "OrderItem" ("orderId", "skuId", "quantity")
       SELECT * FROM unnest($1::text[], $2::text[], $3::int[])`,
      [itemOrder, itemSku, itemQty],
    );
  }
}

/**
 * An order of the simulated merchant: its number and mchid, without a sub-merchant (the simulator makes no partner
 * orders). Numbers are unique per merchant only (Order's outTradeNo + mchid + subMchid key): another merchant's
 * order under the same number is none of the simulator's business.
 */
export interface OrderKey {
  outTradeNo: string;
  mchid: string;
}

/** Sets a NOTPAY order to CLOSED, as the merchant does after calling WeChat's close API. Returns the previous status, or undefined. */
export async function closeOrder(sql: Sql, order: OrderKey): Promise<{ before: string | undefined; closed: boolean }> {
  const found = await sql.query<{ status: string }>(
    `SELECT "status" FROM "Order" WHERE "outTradeNo" = $1 AND "mchid" = $2 AND "subMchid" IS NULL`,
    [order.outTradeNo, order.mchid],
  );
  const before = found.rows[0]?.status;
  if (before !== "NOTPAY") return { before, closed: false };
  const updated = await sql.query(
    `UPDATE "Order" SET "status" = 'CLOSED', "updatedAt" = now()
     WHERE "outTradeNo" = $1 AND "mchid" = $2 AND "subMchid" IS NULL AND "status" = 'NOTPAY'`,
    [order.outTradeNo, order.mchid],
  );
  return { before, closed: (updated.rowCount ?? 0) === 1 };
}

export async function orderExists(sql: Sql, order: OrderKey): Promise<boolean> {
  const r = await sql.query(`SELECT 1 FROM "Order" WHERE "outTradeNo" = $1 AND "mchid" = $2 AND "subMchid" IS NULL`, [
    order.outTradeNo,
    order.mchid,
  ]);
  return (r.rowCount ?? 0) > 0;
}
