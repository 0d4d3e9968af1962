import type pg from "pg";

/**
 * What a worker does with a verified payment, enough for `load`'s database check: take the order's stock and mark
 * it paid, once per order (a NOTPAY order only) — or, with `alwaysMoveStock`, a buggy worker that moves stock on
 * every delivery.
 */
export async function applyPayment(
  pool: pg.Pool,
  mchid: string,
  outTradeNo: string,
  alwaysMoveStock = false,
): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const order = await client.query<{ id: string; status: string }>(
      `SELECT "id", "status"::text AS "status" FROM "Order" WHERE "mchid" = $1 AND "outTradeNo" = $2 FOR UPDATE`,
      [mchid, outTradeNo],
    );
    const row = order.rows[0];
    if (row && (row.status === "NOTPAY" || alwaysMoveStock)) {
      const items = await client.query<{ skuId: string; quantity: number }>(
        `SELECT "skuId", "quantity" FROM "OrderItem" WHERE "orderId" = $1 ORDER BY "skuId"`,
        [row.id],
      );
      for (const item of items.rows) {
        await client.query(`UPDATE "Sku" SET "stock" = "stock" - $2 WHERE "id" = $1`, [item.skuId, item.quantity]);
        await client.query(
          `INSERT INTO "InventoryMovement" ("skuId", "orderId", "delta", "reason") VALUES ($1, $2, $3, 'PAYMENT')
           ON CONFLICT DO NOTHING`,
          [item.skuId, row.id, -item.quantity],
        );
      }
      await client.query(`UPDATE "Order" SET "status" = 'SUCCESS', "paidAt" = now() WHERE "id" = $1`, [row.id]);
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK");
    throw err;
  } finally {
    client.release();
  }
}
