import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { LoadReport } from "../src/load/report.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

/**
 * A receiver that applies every payment exactly once but answers 500 to some after applying them (as a timeout or a
 * 5xx after the job was made durable would: WeChat redelivers, the system is consistent). The load check must report
 * only the unacknowledged deliveries — not stock moved wrongly, nor movements of unpaid orders.
 */
let database: TestDatabase;
let receiver: Receiver;
const temp = tempKeys();
let seen = 0;

async function apply(outTradeNo: string): Promise<void> {
  const client = await database.db.pool.connect();
  try {
    await client.query("BEGIN");
    const order = await client.query<{ id: string; status: string }>(
      `SELECT "id", "status"::text AS "status" FROM "Order" WHERE "outTradeNo" = $1 FOR UPDATE`,
      [outTradeNo],
    );
    const row = order.rows[0];
    if (row && row.status === "NOTPAY") {
      const items = await client.query<{ skuId: string; quantity: number }>(
        `SELECT "skuId", "quantity" FROM "OrderItem" WHERE "orderId" = $1 ORDER BY "skuId"`,
        [row.id],
      );
      for (const item of items.rows) {
        await client.query(`UPDATE "Sku" SET "stock" = "stock" - $2 WHERE "id" = $1`, [item.skuId, item.quantity]);
        await client.query(
          `INSERT INTO "InventoryMovement" ("skuId", "orderId", "delta", "reason") VALUES ($1, $2, $3, 'PAYMENT')`,
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

beforeAll(async () => {
  database = await createTestDatabase("sim_load_check");
  receiver = await startReceiver({
    keys: temp.keys,
    answer: async (r, _all, correct) => {
      if (r.event?.kind !== "transaction") return correct;
      await apply(r.event.transaction.out_trade_no);
      seen += 1;
      // Every 5th delivery: applied and durable, but answered 500 (WeChat would redeliver).
      return seen % 5 === 0 ? { status: 500, body: '{"code":"FAIL","message":"late"}' } : correct;
    },
  });
});
afterAll(async () => {
  await receiver?.close();
  await database?.drop();
  temp.cleanup();
});

it("load's database check does not accuse a consistent database when some deliveries were not acknowledged", async () => {
  const r = await runSim([
    "load",
    "--keys",
    temp.keys.dir,
    "--url",
    receiver.v3,
    "--count",
    "20",
    "--concurrency",
    "1",
    "--database-url",
    database.url,
    "--settle-seconds",
    "2",
    "--json",
  ]);
  const report = JSON.parse(r.stdout) as LoadReport;
  // The database really is consistent: every order paid once, stock == initial + movements.
  const db = await database.db.pool.query<{ paid: string; bad: string }>(
    `SELECT (SELECT count(*) FROM "Order" WHERE "outTradeNo" LIKE $1 AND "status" = 'SUCCESS') AS paid,
            (SELECT count(*) FROM "Sku" s WHERE s."id" LIKE $2 AND s."stock" <>
               ${3 * 20} + COALESCE((SELECT sum(m."delta") FROM "InventoryMovement" m WHERE m."skuId" = s."id"), 0)) AS bad`,
    [`${report.runId}-%`, `${report.runId}-sku-%`],
  );
  expect(db.rows[0]).toEqual({ paid: "20", bad: "0" });
  expect(report.notAcknowledged).toBe(4);
  expect(report.database?.stock.wrong).toEqual([]);
  expect(report.database?.movements).toMatchObject({ extra: 0, missing: 0, wrongDelta: 0 });
  expect(report.database?.paidUnacknowledged).toBe(4);
});
