import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { LoadReport } from "../src/load/report.ts";
import { applyPayment } from "./support/apply-payment.ts";
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

beforeAll(async () => {
  database = await createTestDatabase("sim_load_check");
  receiver = await startReceiver({
    keys: temp.keys,
    answer: async (r, _all, correct) => {
      if (r.event?.kind !== "transaction") return correct;
      await applyPayment(database.db.pool, r.event.transaction.mchid ?? "(none)", r.event.transaction.out_trade_no);
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
