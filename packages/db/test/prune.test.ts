import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  applyPaymentStatement,
  applyRefundStatement,
  type ParsedNotification,
  type PrismaClient,
  type PruneCounts,
  parseRetention,
  pruneNotifications,
  upsertParsedNotification,
} from "@wpn/db";
import { createTestDatabase, deletePrefix, TEST_REDIS_URL, type TestDatabase, testQueuePrefix } from "@wpn/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { APPID, MCHID, paymentFacts } from "./support/payments.ts";

const DAY = 24 * 3_600_000;
const NOW = Date.UTC(2027, 2, 1, 12, 0, 0);
const root = resolve(import.meta.dirname, "../../..");

let tdb: TestDatabase;
let prisma: PrismaClient;
beforeAll(async () => {
  tdb = await createTestDatabase("dbprune");
  prisma = tdb.db.prisma;
});
afterAll(async () => {
  await tdb?.drop();
});
beforeEach(async () => {
  await prisma.$executeRawUnsafe(
    `TRUNCATE "NotificationEvent", "Notification", "InventoryMovement", "Refund", "PaymentTransaction", "OrderItem", "Order", "Sku", "AuditLog", "DeadLetterReplay"`,
  );
});

/** A notification `days` old (received and last changed then, unless `changedDaysAgo`), with `events` timeline rows. */
async function notification(
  id: string,
  status: string,
  days: number,
  { events = 2, changedDaysAgo = days }: { events?: number; changedDaysAgo?: number } = {},
): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Notification" (id, "eventType", "receivedAt", "updatedAt", body, status)
    VALUES (${id}, 'TRANSACTION.SUCCESS', to_timestamp(${NOW - days * DAY}::bigint / 1000.0) AT TIME ZONE 'UTC',
            to_timestamp(${NOW - changedDaysAgo * DAY}::bigint / 1000.0) AT TIME ZONE 'UTC', '{}',
            ${status}::"NotificationStatus")`;
  await prisma.$executeRaw`INSERT INTO "NotificationEvent" ("notificationId", kind)
    SELECT ${id}, 'FAILED' FROM generate_series(1, ${events})`;
}

async function remaining(): Promise<{ notifications: string[]; events: Record<string, number> }> {
  const rows = await prisma.$queryRaw<{ id: string }[]>`SELECT id FROM "Notification" ORDER BY id`;
  const events = await prisma.$queryRaw<{ id: string; n: number }[]>`
    SELECT "notificationId" AS id, count(*)::int AS n FROM "NotificationEvent" GROUP BY 1 ORDER BY 1`;
  return { notifications: rows.map((r) => r.id), events: Object.fromEntries(events.map((e) => [e.id, e.n])) };
}

/**
 * No dead letter waits: these tests are about the database's own rules. The listing of notify.dead is read from a
 * real Redis in apps/worker/test/prune-dead-letters.test.ts, and by the CLI below.
 */
const NO_LETTERS = { letterIds: [], notificationIds: [] };

const prune = (options: { days?: number; batchSize?: number; dryRun?: boolean; onBatch?: (b: PruneCounts) => void }) =>
  pruneNotifications(prisma, {
    olderThanMs: (options.days ?? 30) * DAY,
    now: NOW,
    waitingLetters: NO_LETTERS,
    ...options,
  });

describe("pruneNotifications (real PostgreSQL)", () => {
  it("deletes settled notifications older than the retention with their events, and nothing else", async () => {
    await notification("old-applied", "APPLIED", 40);
    await notification("old-duplicate", "DUPLICATE", 31);
    await notification("old-ignored", "IGNORED", 90, { events: 1 });
    // What an operator still needs, however old.
    for (const status of ["REVIEW", "DEAD", "FAILED", "PROCESSING", "RECEIVED"]) {
      await notification(`old-${status.toLowerCase()}`, status, 40);
    }
    await notification("young-applied", "APPLIED", 29);
    // Received long ago, settled (or touched by a resend) within the retention: kept.
    await notification("old-but-recently-changed", "APPLIED", 40, { changedDaysAgo: 2 });
    await prisma.$executeRaw`INSERT INTO "Sku" (id, name, stock) VALUES ('sku-1', 'sku', 5)`;
    await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal", status, "transactionId", "createdAt")
      VALUES ('o-1', 'otn-1', ${MCHID}, ${APPID}, 300, 'SUCCESS', '4200-otn-1', now() - interval '400 days')`;
    await prisma.$executeRaw`INSERT INTO "InventoryMovement" ("skuId", "orderId", delta, reason, "createdAt")
      VALUES ('sku-1', 'o-1', -1, 'PAYMENT', now() - interval '400 days')`;
    await prisma.$executeRaw`INSERT INTO "Refund" ("outRefundNo", "outTradeNo", status, "amountRefund", "amountTotal", "notificationId", "createdAt")
      VALUES ('rf-1', 'otn-1', 'SUCCESS', 100, 300, 'old-applied', now() - interval '400 days')`;
    await prisma.$executeRaw`INSERT INTO "AuditLog" (actor, role, action, at) VALUES ('ops', 'admin', 'replay', now() - interval '400 days')`;

    const result = await prune({ days: 30 });

    expect(result).toMatchObject({
      notifications: { APPLIED: 1, DUPLICATE: 1, IGNORED: 1 },
      events: 5,
      batches: 1,
      dryRun: false,
      cutoff: new Date(NOW - 30 * DAY),
    });
    expect(await remaining()).toEqual({
      notifications: [
        "old-but-recently-changed",
        "old-dead",
        "old-failed",
        "old-processing",
        "old-received",
        "old-review",
        "young-applied",
      ],
      events: {
        "old-but-recently-changed": 2,
        "old-dead": 2,
        "old-failed": 2,
        "old-processing": 2,
        "old-received": 2,
        "old-review": 2,
        "young-applied": 2,
      },
    });
    const [kept] = await prisma.$queryRaw<{ orders: number; movements: number; refunds: number; audit: number }[]>`
      SELECT (SELECT count(*)::int FROM "Order") AS orders, (SELECT count(*)::int FROM "InventoryMovement") AS movements,
             (SELECT count(*)::int FROM "Refund") AS refunds, (SELECT count(*)::int FROM "AuditLog") AS audit`;
    expect(kept).toEqual({ orders: 1, movements: 1, refunds: 1, audit: 1 });
  });

  it("works in batches of the given size, each committed on its own, until none is left", async () => {
    // Three receipt times, rows sharing one, and a kept row among them: each batch goes on after the last one's row.
    for (let i = 0; i < 7; i++) await notification(`b-${i}`, "APPLIED", 60 + (i % 3), { events: 3 });
    await notification("b-review", "REVIEW", 61);
    const batches: PruneCounts[] = [];

    const result = await prune({ batchSize: 3, onBatch: (batch) => batches.push(batch) });

    expect(batches).toEqual([
      { notifications: { APPLIED: 3 }, events: 9 },
      { notifications: { APPLIED: 3 }, events: 9 },
      { notifications: { APPLIED: 1 }, events: 3 },
    ]);
    expect(result).toMatchObject({ notifications: { APPLIED: 7 }, events: 21, batches: 3 });
    expect((await remaining()).notifications).toEqual(["b-review"]);
  });

  it("a dry run counts what would go and deletes nothing", async () => {
    await notification("d-applied", "APPLIED", 60, { events: 4 });
    await notification("d-ignored", "IGNORED", 60, { events: 1 });
    await notification("d-dead", "DEAD", 60);
    const before = await remaining();

    const result = await prune({ dryRun: true, batchSize: 1 });

    expect(result).toMatchObject({ notifications: { APPLIED: 1, IGNORED: 1 }, events: 5, batches: 0, dryRun: true });
    expect(await remaining()).toEqual(before);
  });

  it("skips a row another transaction holds instead of waiting for it, and takes it on the next run", async () => {
    await notification("l-held", "APPLIED", 60);
    await notification("l-free", "APPLIED", 60);
    const holder = await tdb.db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query(`SELECT 1 FROM "Notification" WHERE id = 'l-held' FOR UPDATE`);
      const result = await Promise.race([
        prune({}),
        new Promise<"blocked">((done) => setTimeout(() => done("blocked"), 5_000)),
      ]);
      expect(result).toMatchObject({ notifications: { APPLIED: 1 }, events: 2 });
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    expect((await remaining()).notifications).toEqual(["l-held"]);
    expect(await prune({})).toMatchObject({ notifications: { APPLIED: 1 } });
    expect((await remaining()).notifications).toEqual([]);
  });

  it("keeps a settled notification whose apply job's dead letter waits, by its latest letter event", async () => {
    /** Letter events in this order, as markNotificationDead, recordReplay and recordReplayFailed write them. */
    const letters = async (id: string, ...entries: [kind: string, queue: string][]) => {
      for (const [kind, queue] of entries) {
        const detail = kind === "DEAD_LETTERED" ? { stage: queue, code: "QUEUE_UNAVAILABLE" } : { queue };
        await prisma.$executeRaw`INSERT INTO "NotificationEvent" ("notificationId", kind, detail)
          VALUES (${id}, ${kind}, ${JSON.stringify(detail)}::jsonb)`;
      }
    };
    const apply = "notify.apply";
    // Kept: the letter waits (its replay publishes the event the job owed, from the row).
    await notification("w-lettered", "APPLIED", 60);
    await letters("w-lettered", ["DEAD_LETTERED", apply]);
    await notification("w-duplicate-lettered", "DUPLICATE", 60);
    await letters("w-duplicate-lettered", ["DEAD_LETTERED", apply]);
    await notification("w-lettered-again", "APPLIED", 60);
    await letters("w-lettered-again", ["DEAD_LETTERED", apply], ["REPLAYED", apply], ["DEAD_LETTERED", apply]);
    // The replay could not put the job back: the letter stayed.
    await notification("w-replay-failed", "APPLIED", 60);
    await letters("w-replay-failed", ["DEAD_LETTERED", apply], ["REPLAYED", apply], ["REPLAY_FAILED", apply]);
    // A parse letter's replay does not take the apply letter away.
    await notification("w-other-stage-replayed", "APPLIED", 60);
    await letters("w-other-stage-replayed", ["DEAD_LETTERED", apply], ["REPLAYED", "notify.parse"]);
    // Pruned: the letter was replayed (long enough ago), or is a parse letter (replayed later, it changes nothing).
    await notification("w-replayed", "APPLIED", 60);
    await letters("w-replayed", ["DEAD_LETTERED", apply], ["REPLAYED", apply]);
    await notification("w-parse-lettered", "IGNORED", 60);
    await letters("w-parse-lettered", ["DEAD_LETTERED", "notify.parse"]);
    const kept = [
      "w-duplicate-lettered",
      "w-lettered",
      "w-lettered-again",
      "w-other-stage-replayed",
      "w-replay-failed",
    ];

    expect(await prune({ dryRun: true })).toMatchObject({ notifications: { APPLIED: 1, IGNORED: 1 }, events: 7 });
    // Before: all seven deleted.
    expect(await prune({ batchSize: 2 })).toMatchObject({ notifications: { APPLIED: 1, IGNORED: 1 }, events: 7 });
    expect((await remaining()).notifications).toEqual(kept);
  });

  it("refuses a retention under 7 days (the row still answers re-run jobs and resends), and arguments it cannot read", async () => {
    await notification("m-applied", "APPLIED", 6.5);
    expect(() => parseRetention("6d")).toThrow(/^PRUNE_RETENTION_TOO_SHORT: /);
    expect(() => parseRetention("0d")).toThrow(/^PRUNE_RETENTION_TOO_SHORT: /);
    for (const text of ["90", "2w", "7.5d", "-7d", "d", ""]) {
      expect(() => parseRetention(text), text).toThrow(/^PRUNE_RETENTION_INVALID: /);
    }
    expect(parseRetention("7d")).toBe(7 * DAY);
    expect(parseRetention("90d")).toBe(90 * DAY);
    await expect(prune({ days: 6.99 })).rejects.toThrow(/^PRUNE_RETENTION_TOO_SHORT: /);
    await expect(prune({ days: 6.99, dryRun: true })).rejects.toThrow(/^PRUNE_RETENTION_TOO_SHORT: /);
    for (const batchSize of [0, 1.5, 50_001]) {
      await expect(prune({ batchSize }), String(batchSize)).rejects.toThrow(/^PRUNE_BATCH_INVALID: /);
    }
    expect((await remaining()).notifications).toEqual(["m-applied"]);
    expect(await prune({ days: 7 })).toMatchObject({ notifications: {}, batches: 0 });
  });
});

describe("a pruned notification delivered again is not applied again (what the retention may rest on)", () => {
  const parsed = (
    id: string,
    eventType: string,
    outTradeNo: string,
    outRefundNo: string | null,
  ): ParsedNotification => ({
    id,
    apiVersion: "v3",
    wechatId: null,
    otherFormId: null,
    mchid: MCHID,
    eventType,
    receivedAt: Date.now(),
    headers: null,
    body: "{}",
    status: "PROCESSING",
    outTradeNo,
    transactionId: `4200-${outTradeNo}`,
    outRefundNo,
    subMchid: null,
    errorCode: null,
    lastError: null,
    event: { kind: "PARSED", detail: {} },
  });
  const refund = (notificationId: string) => ({
    notificationId,
    outTradeNo: "x-1",
    outRefundNo: "x-1-rf",
    refundId: "5030-x-1",
    transactionId: "4200-x-1",
    mchid: MCHID,
    subMchid: null,
    status: "SUCCESS" as const,
    amountRefund: 100,
    amountTotal: 300,
    successAt: Date.now(),
    restockOnFullRefund: true,
  });
  /** Parse (the row is created again as PROCESSING when it was pruned) and apply, as the worker's stages do. */
  async function deliverPayment(id: string) {
    const saved = await upsertParsedNotification(prisma, parsed(id, "TRANSACTION.SUCCESS", "x-1", null));
    return { saved, result: await applyPaymentStatement(prisma, paymentFacts(id, "x-1")) };
  }
  async function deliverRefund(id: string) {
    const saved = await upsertParsedNotification(prisma, parsed(id, "REFUND.SUCCESS", "x-1", "x-1-rf"));
    return { saved, result: await applyRefundStatement(prisma, refund(id)) };
  }
  const business = async () =>
    prisma.$queryRaw`SELECT o.status::text, o."transactionId", o."refundedTotal", s.stock,
        (SELECT count(*)::int FROM "InventoryMovement") AS movements, (SELECT count(*)::int FROM "Refund") AS refunds
      FROM "Order" o, "Sku" s`;

  it("a payment and a refund, each pruned and delivered again, answer DUPLICATE and change nothing", async () => {
    await prisma.$executeRaw`INSERT INTO "Sku" (id, name, stock) VALUES ('x-sku', 'sku', 5)`;
    await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal") VALUES ('x-o', 'x-1', ${MCHID}, ${APPID}, 300)`;
    await prisma.$executeRaw`INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES ('x-o', 'x-sku', 2)`;
    expect((await deliverPayment("x-pay")).result.outcome).toBe("APPLIED");
    expect((await deliverRefund("x-refund")).result.outcome).toBe("APPLIED");
    const after = await business();
    expect(after).toEqual([
      { status: "SUCCESS", transactionId: "4200-x-1", refundedTotal: 100, stock: 3, movements: 1, refunds: 1 },
    ]);

    // Both settled rows pruned (the clock moved on past the retention).
    const pruned = await pruneNotifications(prisma, {
      olderThanMs: 7 * DAY,
      now: Date.now() + 8 * DAY,
      waitingLetters: NO_LETTERS,
    });
    expect(pruned.notifications).toEqual({ APPLIED: 2 });

    const payment = await deliverPayment("x-pay");
    const refunded = await deliverRefund("x-refund");
    expect(payment.saved).toEqual({ status: "PROCESSING", inserted: true });
    expect(payment.result.outcome).toBe("DUPLICATE");
    expect(refunded.saved).toEqual({ status: "PROCESSING", inserted: true });
    expect(refunded.result.outcome).toBe("DUPLICATE");
    expect(await business()).toEqual(after);
  });
});

describe("npm run db:prune (scripts/prune.ts)", () => {
  // The workers' Redis, read for the dead letters that still wait (none under this file's own prefix).
  const prefix = testQueuePrefix("dbprune");
  afterAll(() => deletePrefix(prefix));
  const runWith = (databaseUrl: string, ...args: string[]) => runIn({ DATABASE_URL: databaseUrl }, ...args);
  /**
   * Not spawnSync: a test runs several of these, each a Node process loading tsx and Prisma (2 s of CPU), and one after
   * another they took 24–35 s on a loaded 2-core host, against the test's 30 s. Those that do not depend on each
   * other's effects run at once.
   */
  const runIn = (env: Record<string, string>, ...args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ["--import", "tsx", "scripts/prune.ts", ...args],
        {
          cwd: root,
          env: { ...process.env, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, LOG_LEVEL: "info", ...env },
          encoding: "utf8",
          timeout: 30_000,
        },
        (error, stdout, stderr) => {
          // A non-zero exit is what several tests expect: its status, not a rejection. A failure to run at all
          // (no exit code) is status null, which no test expects, with the error in stderr.
          const status = error === null ? 0 : typeof error.code === "number" ? error.code : null;
          resolve({ status, stdout, stderr: status === null ? `${stderr}${String(error)}` : stderr });
        },
      );
    });
  const run = (...args: string[]) => runWith(tdb.url, ...args);

  it("a database that does not exist, or a DATABASE_URL of another kind: one message, no stack trace", async () => {
    const missing = new URL(tdb.url);
    missing.pathname = "/wpn_prune_no_such_database";
    const [none, mysql] = await Promise.all([
      runWith(missing.toString(), "--older-than", "90d"),
      runWith("mysql://root@127.0.0.1:3306/shop", "--older-than", "90d"),
    ]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(
      /^PostgreSQL at .* has no database "wpn_prune_no_such_database": run npm run db:migrate .* then run npm run db:prune again\.\n$/,
    );
    expect(mysql.status).toBe(78);
    expect(mysql.stderr).toMatch(/^configuration error: DATABASE_URL must be a postgresql:\/\/ .*\n$/);
  });

  it("prints what it deleted, and refuses a short retention with exit code 2", async () => {
    await notification("c-applied", "APPLIED", 400, { events: 3 });
    await notification("c-review", "REVIEW", 400);
    await prisma.$executeRaw`INSERT INTO "DeadLetterReplay" ("letterId", fence, "changedAt")
      VALUES ('apply.c-applied.1', 1, now() - interval '400 days')`;

    // None of the three deletes anything: the real run below still finds the rows.
    const [dry, short, missing] = await Promise.all([
      run("--older-than", "90d", "--dry-run"),
      run("--older-than", "1d"),
      run("--dry-run"),
    ]);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^dry run: would delete 1 notification\(s\) \(APPLIED 1\) and 3 event\(s\) received/m);
    expect(short.status).toBe(2);
    expect(short.stderr).toMatch(/^PRUNE_RETENTION_TOO_SHORT: /);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^PRUNE_RETENTION_INVALID: --older-than is required/);

    const real = await run("--older-than", "90d", "--batch", "10");
    expect(real.status, real.stderr).toBe(0);
    expect(real.stdout).toContain("deleted 1 notification(s) (APPLIED 1) and 3 event(s)\n");
    expect(real.stdout).toMatch(/in 1 batch\(es\)$/m);
    expect(real.stdout).toMatch(/^deleted 1 dead-letter replay record\(s\) last changed before /m);
    expect((await remaining()).notifications).toEqual(["c-review"]);
    expect(await prisma.deadLetterReplay.count()).toBe(0);
  });

  it("--help prints the usage and exits 0; an argument it does not take is PRUNE_ARGUMENT_INVALID, exit 2", async () => {
    const wrongArgs = [["--older-than", "90d", "--force"], ["--older-than", "90d", "now"], ["--dry-run=yes"]];
    const [help, ...wrongRuns] = await Promise.all([run("--help"), ...wrongArgs.map((args) => run(...args))]);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run db:prune -- --older-than <days>d/);
    expect(help.stderr).toBe("");
    // What it says must be what it does: the minimum it enforces (PRUNE_RETENTION_TOO_SHORT), and a README section
    // that exists.
    expect(help.stdout).toMatch(/at least 7 days/);
    const section = /README\.md, "([^"]+)"/.exec(help.stdout)?.[1];
    expect(readFileSync(resolve(import.meta.dirname, "../../../README.md"), "utf8").split("\n")).toContain(
      `## ${section}`,
    );
    for (const [i, wrong] of wrongRuns.entries()) {
      expect(wrong.status, wrongArgs[i]?.join(" ")).toBe(2);
      expect(wrong.stderr).toMatch(/^PRUNE_ARGUMENT_INVALID: .*\nusage: npm run db:prune /);
      expect(wrong.stdout).toBe("");
    }
  });

  it("a Redis it cannot read: refuses with PRUNE_LETTERS_UNREADABLE and deletes nothing", async () => {
    await notification("u-applied", "APPLIED", 400);
    await prisma.$executeRaw`INSERT INTO "DeadLetterReplay" ("letterId", fence, "changedAt")
      VALUES ('apply.u-applied.1', 1, now() - interval '400 days')`;

    // Nothing listens on port 1: which letters wait is unknown, so no row can be told safe to delete.
    const refused = await runIn({ DATABASE_URL: tdb.url, REDIS_URL: "redis://127.0.0.1:1" }, "--older-than", "90d");
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^PRUNE_LETTERS_UNREADABLE: .*nothing was deleted/m);
    expect((await remaining()).notifications).toEqual(["u-applied"]);
    expect(await prisma.deadLetterReplay.count()).toBe(1);
  });
});
