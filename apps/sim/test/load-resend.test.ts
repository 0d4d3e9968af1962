import http from "node:http";
import type { AddressInfo } from "node:net";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { LoadReport } from "../src/load/report.ts";
import { applyPayment } from "./support/apply-payment.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Answer, type Received, type Receiver, startReceiver } from "./support/receiver.ts";

/**
 * `load --resend` / `--resend-schedule`: a delivery that is not acknowledged is resent under the same notification
 * (same envelope id and body, fresh Wechatpay-Timestamp/Nonce/Signature), as WeChat Pay does, until acknowledged or
 * the schedule runs out. The receiver is built from @wpn/wechatpay's verify functions and applies a payment to the
 * database only when it acknowledges it (as the ingress + worker do once a job is durable); `policy` decides, per
 * verified request, whether it answers 503 instead.
 */
let database: TestDatabase;
let receiver: Receiver;
const temp = tempKeys();
/** Returns an answer that replaces the correct one (not applied), or undefined to apply and acknowledge. */
let policy: (r: Received, id: string) => Answer | undefined = () => undefined;
/** Envelope ids in the order first seen, per test. */
let firstSeen: string[] = [];

const UNAVAILABLE: Answer = { status: 503, body: '{"code":"SYSTEM_ERROR","message":"restarting"}' };

beforeAll(async () => {
  database = await createTestDatabase("sim_load_resend");
  receiver = await startReceiver({
    keys: temp.keys,
    answer: async (r, _all, correct) => {
      if (r.event?.kind !== "transaction") return correct;
      const id = r.event.envelope.id;
      if (!firstSeen.includes(id)) firstSeen.push(id);
      const replaced = policy(r, id);
      if (replaced !== undefined) return replaced;
      await applyPayment(database.db.pool, r.event.transaction.mchid ?? "(none)", r.event.transaction.out_trade_no);
      return correct;
    },
  });
});
beforeEach(() => {
  receiver.received.length = 0;
  firstSeen = [];
  policy = () => undefined;
});
afterAll(async () => {
  await receiver?.close();
  await database?.drop();
  temp.cleanup();
});

/** 503 to the first request carrying every third notification id (in the order ids arrive), then acknowledged. */
function failFirstOfEveryThird(): Set<string> {
  const failedOnce = new Set<string>();
  policy = (_r, id) => {
    if (firstSeen.indexOf(id) % 3 !== 0 || failedOnce.has(id)) return undefined;
    failedOnce.add(id);
    return UNAVAILABLE;
  };
  return failedOnce;
}

const load = (args: string[]) =>
  runSim(["load", "--keys", temp.keys.dir, "--url", receiver.v3, "--database-url", database.url, ...args]);

const byId = (id: string) => receiver.received.filter((x) => x.event?.envelope.id === id);

describe("load --resend", () => {
  it("resends the unacknowledged deliveries under the same id and body until acknowledged", async () => {
    const failedOnce = failFirstOfEveryThird();
    const r = await load([
      "--count",
      "30",
      "--duplicates",
      "0.3",
      "--concurrency",
      "4",
      "--resend-schedule",
      "20ms,50ms",
      "--settle-seconds",
      "5",
      "--json",
    ]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code, JSON.stringify(report.problems)).toBe(0);
    expect(failedOnce.size).toBe(10);
    expect(report.settings.resendScheduleMs).toEqual([20, 50]);
    expect(report.notifications).toEqual({ unique: 30, duplicates: 9, planned: 39, sent: 39 });
    expect(report.attempts).toBe(49);
    expect(report.resends).toBe(10);
    expect(report.acknowledged).toBe(39);
    expect(report.acknowledgedAfterResend).toBe(10);
    expect(report.notAcknowledged).toBe(0);
    expect(report.unacknowledgedNotifications).toBe(0);
    expect(report.neverAcknowledged).toEqual([]);
    expect(report.answers).toEqual({ "204": 39, "503": 10 });
    expect(report.database).toMatchObject({ expectedPaid: 30, paid: 30, settled: true, ok: true });
    expect(report.database?.movements).toMatchObject({ expected: 60, found: 60, missing: 0, extra: 0, wrongDelta: 0 });

    for (const id of failedOnce) {
      const deliveries = byId(id);
      expect(deliveries.length).toBeGreaterThanOrEqual(2);
      // WeChat keeps the notification (envelope id, encrypted resource: the whole body) and signs each delivery anew.
      expect(new Set(deliveries.map((d) => d.body.toString("utf8"))).size).toBe(1);
      expect(new Set(deliveries.map((d) => d.headers["wechatpay-nonce"])).size).toBe(deliveries.length);
      expect(new Set(deliveries.map((d) => d.headers["wechatpay-signature"])).size).toBe(deliveries.length);
      expect(deliveries.every((d) => d.error === undefined)).toBe(true);
    }
  });

  it("without a resend option keeps the old behaviour: unacknowledged deliveries are counted, exit 1", async () => {
    const failedOnce = failFirstOfEveryThird();
    const r = await load(["--count", "12", "--concurrency", "2", "--settle-seconds", "5", "--json"]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code).toBe(1);
    expect(failedOnce.size).toBe(4);
    expect(report.settings.resendScheduleMs).toBeNull();
    expect(report.attempts).toBe(12);
    expect(report.resends).toBe(0);
    expect(report.notAcknowledged).toBe(4);
    expect(report.unacknowledgedNotifications).toBe(4);
    expect(receiver.received).toHaveLength(12);
    expect(report.problems[0]).toMatch(/^4 of 12 deliveries were not acknowledged \(HTTP 503/);
    // The acknowledged 8 were applied once; the 4 others are reported apart, not as a database failure.
    expect(report.database).toMatchObject({ expectedPaid: 8, paid: 8, ok: true, paidUnacknowledged: 0 });
  });

  it("reports the deliveries still unacknowledged when the schedule runs out, apart from the database check", async () => {
    const always = new Set<string>();
    policy = (_r, id) => {
      if (firstSeen.indexOf(id) % 4 !== 0) return undefined;
      always.add(id);
      return UNAVAILABLE;
    };
    const r = await load(["--count", "8", "--resend-schedule", "10ms,10ms,10ms", "--settle-seconds", "5", "--json"]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code).toBe(1);
    expect(always.size).toBe(2);
    expect(report.attempts).toBe(8 + 2 * 3);
    expect(report.acknowledgedAfterResend).toBe(0);
    expect(report.notAcknowledged).toBe(2);
    expect(report.neverAcknowledged.map((n) => n.id).sort()).toEqual([...always].sort());
    expect(report.neverAcknowledged.every((n) => n.attempts === 4 && n.lastReason.startsWith("HTTP 503"))).toBe(true);
    expect(report.problems).toEqual([
      '2 of 8 deliveries were still not acknowledged after 3 resends each (HTTP 503: failure, WeChat will redeliver (code SYSTEM_ERROR, message "restarting"))',
    ]);
    expect(report.database).toMatchObject({ expectedPaid: 6, paid: 6, ok: true, unacknowledgedOrders: 2 });
    for (const id of always) expect(byId(id)).toHaveLength(4);

    const text = await load(["--count", "4", "--resend-schedule", "10ms", "--settle-seconds", "5"]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/attempts +5 \(4 first deliveries \+ 1 resends\), 0 acknowledged after a resend/);
    expect(text.stdout).toMatch(/never acknowledged: [A-Za-z0-9_-]+ \(order \S+, 2 attempts: HTTP 503/);
  });

  it("--resend follows WeChat's schedule, scaled by --time-scale", async () => {
    const failures = new Map<string, number>();
    policy = (_r, id) => {
      const n = failures.get(id) ?? 0;
      if (n >= 2) return undefined;
      failures.set(id, n + 1);
      return UNAVAILABLE;
    };
    const started = Date.now();
    const r = await load(["--count", "3", "--resend", "--time-scale", "0.001", "--settle-seconds", "5", "--json"]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code, JSON.stringify(report.problems)).toBe(0);
    // 15 s, 15 s, 30 s, 3 m, 10 m, 20 m, 30 m, 30 m, 30 m, 60 m, 3 h, 3 h, 3 h, 6 h, 6 h × 0.001.
    expect(report.settings.resendScheduleMs).toEqual([
      15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
    ]);
    expect(report.attempts).toBe(9);
    expect(report.acknowledgedAfterResend).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(30);
  });

  it("stops resending at --max-seconds and says which deliveries were cut", async () => {
    policy = () => UNAVAILABLE;
    const started = Date.now();
    const r = await load(["--count", "2", "--resend-schedule", "1h", "--max-seconds", "0.3", "--json"]);
    expect(Date.now() - started).toBeLessThan(5_000);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code).toBe(1);
    expect(report.stopped).toBe("time");
    expect(report.resendsCut).toBe(2);
    expect(report.notAcknowledged).toBe(2);
    expect(report.problems.join("\n")).toContain(
      "stopped after --max-seconds 0.3: sent 2 of 2; the next resend of 2 deliveries fell after it (not sent)",
    );
  });

  it("exits 3 when the receiver stayed unreachable through the whole schedule", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await runSim([
      "load",
      "--keys",
      temp.keys.dir,
      "--url",
      `http://127.0.0.1:${port}/v3`,
      "--count",
      "3",
      "--resend-schedule",
      "10ms,10ms",
      "--json",
    ]);
    const report = JSON.parse(r.stdout) as LoadReport;
    expect(r.code).toBe(3);
    expect(report.attempts).toBe(9);
    expect(report.answers).toEqual({ ECONNREFUSED: 9 });
  });

  it("a database that lost an acknowledged payment exits 1 even when the other failures were connection errors", async () => {
    // Acknowledged without being applied (a lost payment), or the connection dropped without an answer.
    let n = 0;
    const lossy = await startReceiver({
      keys: temp.keys,
      answer: (_r, _all, correct) => {
        n += 1;
        return n % 2 === 0 ? { status: 0, drop: true } : correct;
      },
    });
    try {
      const r = await runSim([
        "load",
        "--keys",
        temp.keys.dir,
        "--url",
        lossy.v3,
        "--database-url",
        database.url,
        "--count",
        "4",
        "--concurrency",
        "1",
        "--settle-seconds",
        "0.3",
        "--json",
      ]);
      const report = JSON.parse(r.stdout) as LoadReport;
      expect(report.notAcknowledged).toBe(2);
      expect(Object.keys(report.answers).filter((k) => k !== "204")).toEqual(["ECONNRESET"]);
      expect(report.database?.ok).toBe(false);
      expect(r.code).toBe(1);
    } finally {
      await lossy.close();
    }
  });

  it("names wrong resend flags", async () => {
    for (const [args, flag] of [
      [["--resend-schedule", "1x"], "--resend-schedule"],
      [["--resend-schedule", "1s,,2s"], "--resend-schedule"],
      [["--resend-schedule", "0ms"], "--resend-schedule"],
      [["--resend-schedule", "7h"], "--resend-schedule"],
      [["--resend-schedule", Array.from({ length: 31 }, () => "1s").join(",")], "--resend-schedule"],
      [["--time-scale", "0.01"], "--time-scale"],
      [["--resend", "--resend-schedule", "1s", "--time-scale", "0.01"], "--time-scale"],
      [["--resend", "--time-scale", "0"], "--time-scale"],
    ] as const) {
      const r = await load([...args]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toContain(flag);
    }
  });
});
