import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoadReport } from "../src/load/report.ts";
import { applyPayment } from "./support/apply-payment.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

/**
 * `load` against a receiver built from @wpn/wechatpay's verify functions. In "none" mode nothing processes
 * the notifications (the report must say so); "worker" applies each verified payment to the database like a
 * correct worker (once per order); "double" is a buggy worker that moves stock on every delivery.
 */
let mode: "none" | "worker" | "double" = "none";
let database: TestDatabase;
let receiver: Receiver;
const temp = tempKeys();

beforeAll(async () => {
  database = await createTestDatabase("sim_load");
  receiver = await startReceiver({
    keys: temp.keys,
    answer: async (r, _all, correct) => {
      if (mode !== "none" && r.event?.kind === "transaction")
        await applyPayment(
          database.db.pool,
          r.event.transaction.mchid ?? "(none)",
          r.event.transaction.out_trade_no,
          mode === "double",
        );
      return correct;
    },
  });
});
afterAll(async () => {
  await receiver?.close();
  await database?.drop();
  temp.cleanup();
});

const load = (args: string[], opts: { tty?: boolean } = {}) =>
  runSim(["load", "--keys", temp.keys.dir, "--url", receiver.v3, ...args], opts);

describe("load", () => {
  it("seeds orders with two items each, sends duplicates, and reports that nothing processed them", async () => {
    mode = "none";
    const r = await load([
      "--count",
      "20",
      "--duplicates",
      "0.5",
      "--concurrency",
      "4",
      "--database-url",
      database.url,
      "--settle-seconds",
      "0.5",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(1);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(report.orders).toEqual({ mode: "seed", count: 20 });
    expect(report.notifications).toEqual({ unique: 20, duplicates: 10, planned: 30, sent: 30 });
    expect(report.answers).toEqual({ "204": 30 });
    expect(report.acknowledged).toBe(30);
    expect(report.unacknowledgedNotifications).toBe(0);
    expect(report.latencyMs.count).toBe(30);
    expect(report.latencyMs.p50).toBeGreaterThan(0);
    expect(report.latencyMs.max).toBeGreaterThanOrEqual(report.latencyMs.p99);
    expect(report.throughputPerSecond).toBeGreaterThan(0);
    expect(report.database?.expectedPaid).toBe(20);
    expect(report.database?.paid).toBe(0);
    expect(report.database?.settled).toBe(false);
    expect(report.database?.byStatus).toEqual({ NOTPAY: 20 });
    expect(report.ok).toBe(false);
    expect(report.problems.join("\n")).toContain("nothing processed them");

    const orders = await database.db.pool.query<{ n: string; items: string }>(
      `SELECT count(DISTINCT o."id") AS n, count(i."id") AS items FROM "Order" o JOIN "OrderItem" i ON i."orderId" = o."id"
       WHERE o."outTradeNo" LIKE $1`,
      [`${report.runId}-%`],
    );
    expect(orders.rows[0]).toEqual({ n: "20", items: "40" });
    const skus = await database.db.pool.query<{ stock: number }>(`SELECT "stock" FROM "Sku" WHERE "id" LIKE $1`, [
      `${report.runId}-sku-%`,
    ]);
    expect(skus.rows).toHaveLength(20);
    expect(skus.rows.every((s) => s.stock === 60)).toBe(true);
    // Duplicates re-sent earlier notifications: 20 distinct ids among 30 deliveries.
    const ids = receiver.received.slice(-30).map((x) => x.event?.envelope.id);
    expect(new Set(ids).size).toBe(20);
  });

  it("passes the database check when a correct worker applies each payment once", async () => {
    mode = "worker";
    const r = await load([
      "--count",
      "30",
      "--duplicates",
      "0.3",
      "--database-url",
      database.url,
      "--settle-seconds",
      "5",
      "--json",
    ]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code, JSON.stringify(report.problems)).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.database).toMatchObject({ expectedPaid: 30, paid: 30, settled: true, byStatus: { SUCCESS: 30 } });
    expect(report.database?.stock.wrong).toEqual([]);
    expect(report.database?.movements).toMatchObject({ expected: 60, found: 60, missing: 0, extra: 0, wrongDelta: 0 });
  });

  it("catches a worker that moves stock on every delivery", async () => {
    mode = "double";
    const r = await load([
      "--count",
      "20",
      "--duplicates",
      "1",
      "--database-url",
      database.url,
      "--settle-seconds",
      "5",
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("is not initial − paid quantities");
    expect(r.stdout).toContain("FAILED");
  });

  it("--existing pays NOTPAY orders already in the database", async () => {
    mode = "worker";
    const r = await load([
      "--existing",
      "--count",
      "5",
      "--database-url",
      database.url,
      "--settle-seconds",
      "5",
      "--json",
    ]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code, JSON.stringify(report.problems)).toBe(0);
    expect(report.orders).toEqual({ mode: "existing", count: 5 });
    expect(report.database?.paid).toBe(5);
  });

  it("--existing checks its merchant's orders only: another merchant's orders under the same numbers are not its", async () => {
    mode = "worker";
    // The next 3 NOTPAY orders --existing will take, copied under another merchant (unpaid, so a check that read
    // them would wait for payments that never come, and count them).
    const copied = await database.db.pool.query(
      `INSERT INTO "Order" ("outTradeNo", "mchid", "appid", "amountTotal")
       SELECT "outTradeNo", '1900000999', "appid", "amountTotal" FROM "Order"
       WHERE "status" = 'NOTPAY' AND "mchid" <> '1900000999' ORDER BY "createdAt", "id" LIMIT 3`,
    );
    expect(copied.rowCount).toBe(3);
    const r = await load([
      "--existing",
      "--count",
      "3",
      "--database-url",
      database.url,
      "--settle-seconds",
      "2",
      "--json",
    ]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code, JSON.stringify(report.problems)).toBe(0);
    expect(report.database).toMatchObject({ expectedPaid: 3, paid: 3, settled: true, byStatus: { SUCCESS: 3 } });
    const other = await database.db.pool.query(`SELECT "status"::text FROM "Order" WHERE "mchid" = '1900000999'`);
    expect(other.rows).toEqual([{ status: "NOTPAY" }, { status: "NOTPAY" }, { status: "NOTPAY" }]);
  });

  it("without a database: no seeding, and the report says the check was skipped", async () => {
    mode = "none";
    const r = await load(["--count", "5"]);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toContain("not checked: no --database-url / DATABASE_URL given");
    expect(r.stdout).toContain("answers       204: 5");
    expect(r.stdout).toContain("latency ms    p50");
  });

  it("paces to --rate and draws a progress bar only on a terminal", async () => {
    const started = Date.now();
    const tty = await load(["--count", "12", "--rate", "40", "--concurrency", "2"], { tty: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(260); // 11 intervals of 25 ms
    expect(tty.code).toBe(0);
    expect(tty.stderr).toMatch(/\r\[[#.]{30}\] \d+\/12/);
    const plain = await load(["--count", "3"]);
    expect(plain.stderr).not.toContain("\r[");
  });

  it("stops at --max-seconds and says so", async () => {
    const r = await load(["--count", "50", "--rate", "10", "--max-seconds", "0.3", "--json"]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code).toBe(1);
    expect(report.stopped).toBe("time");
    expect(report.notifications.sent).toBeLessThan(50);
    expect(report.problems.join()).toContain("--max-seconds");
  });

  it("v2 load against the v2 endpoint", async () => {
    const r = await runSim([
      "load",
      "--keys",
      temp.keys.dir,
      "--v2",
      "--sign-type",
      "HMAC-SHA256",
      "--url",
      receiver.v2,
      "--count",
      "4",
      "--json",
    ]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code).toBe(0);
    expect(report.api).toBe("v2");
    expect(report.answers).toEqual({ "200": 4 });
  });

  it("names wrong flags", async () => {
    for (const [args, flag] of [
      [["--count", "0"], "--count"],
      [["--duplicates", "abc"], "--duplicates"],
      [["--rate", "-1"], "--rate"],
      [["--existing"], "--existing"],
      [["--sign-type", "MD5"], "--sign-type"],
    ] as const) {
      const r = await load([...args]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toContain(flag);
    }
  });
});
