import { type Config, loadConfig } from "@wpn/config";
import { classifyDbError, createDb } from "@wpn/db";
import { applyBackoffDelay, applyJobSchema, decodeJob } from "@wpn/queue";
import { WechatPayError } from "@wpn/wechatpay";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCompactChinaTime, parseRfc3339, parseSpacedChinaTime } from "../src/domain/time.ts";
import { toWorkerError, WorkerError } from "../src/errors.ts";
import { checkWorkerConfig } from "../src/worker.ts";
import { createWorld, type World } from "./support/fixtures.ts";

let world: World;
beforeAll(async () => {
  world = await createWorld("werr");
  await world.prisma.$executeRaw`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)`;
  await world.prisma.$executeRaw`INSERT INTO t VALUES (1, 0), (2, 0)`;
});
afterAll(() => world.cleanup());

/** Runs `fn` and returns what it threw (fails the test when it does not throw). */
async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}

describe("database errors from a real PostgreSQL, through Prisma", () => {
  it("a deadlock (40P01) is a transient DB_CONFLICT", async () => {
    const { prisma } = world;
    let release!: () => void;
    const bothLocked = new Promise<void>((r) => {
      let n = 0;
      release = () => {
        n += 1;
        if (n === 2) r();
      };
    });
    const crossing = (first: number, second: number) =>
      prisma.$transaction(async (tx) => {
        await tx.$executeRaw`UPDATE t SET v = v + 1 WHERE id = ${first}`;
        release();
        await bothLocked;
        await tx.$executeRaw`UPDATE t SET v = v + 1 WHERE id = ${second}`;
      });
    const results = await Promise.allSettled([crossing(1, 2), crossing(2, 1)]);
    const failure = results.find((r) => r.status === "rejected");
    expect(failure).toBeDefined();
    const reason = (failure as PromiseRejectedResult).reason;
    expect(classifyDbError(reason)).toMatchObject({ transient: true, code: "DB_CONFLICT" });
    expect(toWorkerError(reason)).toMatchObject({ code: "DB_CONFLICT", policy: "retry" });
  });

  it("a serialization failure (40001) is a transient DB_CONFLICT", async () => {
    const a = new pg.Client({
      connectionString: world.db.db.target.connectionString,
      options: `-c search_path=${world.db.schema}`,
    });
    const b = new pg.Client({
      connectionString: world.db.db.target.connectionString,
      options: `-c search_path=${world.db.schema}`,
    });
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await a.query("SELECT v FROM t WHERE id = 1");
      await b.query("UPDATE t SET v = v + 1 WHERE id = 1");
      const error = await thrown(() => a.query("UPDATE t SET v = v + 1 WHERE id = 1"));
      await a.query("ROLLBACK");
      expect(classifyDbError(error)).toMatchObject({ transient: true, code: "DB_CONFLICT", sqlstate: "40001" });
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it("a lock timeout (55P03, lock_not_available) is a retried DB_LOCK_TIMEOUT, never dead-lettered", async () => {
    const holder = new pg.Client({
      connectionString: world.db.db.target.connectionString,
      options: `-c search_path=${world.db.schema}`,
    });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT v FROM t WHERE id = 2 FOR UPDATE");
      // The row is another transaction's: PostgreSQL gives up after lock_timeout, the data being fine.
      const error = await thrown(() =>
        world.prisma.$transaction(async (tx) => {
          await tx.$executeRaw`SET LOCAL lock_timeout = '50ms'`;
          await tx.$executeRaw`UPDATE t SET v = v + 1 WHERE id = 2`;
        }),
      );
      expect(classifyDbError(error)).toEqual({ transient: true, code: "DB_LOCK_TIMEOUT", sqlstate: "55P03" });
      expect(toWorkerError(error)).toMatchObject({ code: "DB_LOCK_TIMEOUT", policy: "retry" });
    } finally {
      await holder.query("ROLLBACK");
      await holder.end();
    }
  });

  it("a statement timeout (57014, query_canceled) is a retried DB_STATEMENT_TIMEOUT", async () => {
    const error = await thrown(() =>
      world.prisma.$transaction(async (tx) => {
        await tx.$executeRaw`SET LOCAL statement_timeout = '50ms'`;
        await tx.$queryRaw`SELECT pg_sleep(2)`;
      }),
    );
    expect(classifyDbError(error)).toEqual({ transient: true, code: "DB_STATEMENT_TIMEOUT", sqlstate: "57014" });
    expect(toWorkerError(error)).toMatchObject({ code: "DB_STATEMENT_TIMEOUT", policy: "retry" });
  });

  it("waiting too long for a pooled connection is a transient DB_UNAVAILABLE", async () => {
    const db = createDb({ url: world.db.url, poolMax: 1 });
    const held = await db.pool.connect();
    // Short only now: pg's pool bounds making a connection by the same setting as waiting for one, and the held
    // connection, made under it, took over 100 ms on a loaded host ('Connection terminated due to connection timeout').
    db.pool.options.connectionTimeoutMillis = 100;
    try {
      const error = await thrown(() => db.prisma.$queryRaw`SELECT 1`);
      expect(classifyDbError(error)).toMatchObject({ transient: true, code: "DB_UNAVAILABLE" });
    } finally {
      held.release();
      await db.close();
    }
  });

  it("PostgreSQL not listening is a transient DB_UNAVAILABLE", async () => {
    const url = new URL(world.db.url);
    url.port = "1";
    const db = createDb({ url: url.toString(), connectTimeoutMs: 500 });
    try {
      const error = await thrown(() => db.prisma.$queryRaw`SELECT 1`);
      expect(classifyDbError(error)).toMatchObject({ transient: true, code: "DB_UNAVAILABLE" });
      expect(toWorkerError(error).policy).toBe("retry");
    } finally {
      await db.close();
    }
  });

  it("a CHECK violation (stock below zero) is permanent DB_CONSTRAINT; bad data is permanent DB_DATA", async () => {
    await world.prisma.sku.create({ data: { id: "chk", name: "chk", stock: 0 } });
    const check = await thrown(() => world.prisma.$executeRaw`UPDATE "Sku" SET stock = stock - 1 WHERE id = 'chk'`);
    expect(classifyDbError(check)).toMatchObject({ transient: false, code: "DB_CONSTRAINT", sqlstate: "23514" });
    const data = await thrown(() => world.prisma.$queryRaw`SELECT 1 / 0`);
    expect(classifyDbError(data)).toMatchObject({ transient: false, code: "DB_DATA", sqlstate: "22012" });
    expect(toWorkerError(data)).toMatchObject({ code: "DB_DATA", policy: "stop" });
  });

  it("a unique violation on a transaction or refund id is a retried DB_CONFLICT (the next run decides it); others stay DB_CONSTRAINT", async () => {
    // The apply statements check these ids before writing; reaching the index means a concurrent transaction
    // committed the same id after their snapshot (packages/db/test/id-conflicts.test.ts makes that race happen).
    const { prisma } = world;
    await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal", "transactionId")
      VALUES ('u1', 'U-1', 'm', 'a', 1, '4200-u'), ('u2', 'U-2', 'm', 'a', 1, NULL)`;
    const txn = await thrown(() => prisma.$executeRaw`UPDATE "Order" SET "transactionId" = '4200-u' WHERE id = 'u2'`);
    expect(classifyDbError(txn)).toEqual({ transient: true, code: "DB_CONFLICT", sqlstate: "23505" });
    expect(toWorkerError(txn)).toMatchObject({ code: "DB_CONFLICT", policy: "retry" });
    await prisma.$executeRaw`INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", status, "amountRefund", "amountTotal")
      VALUES ('RF-u', '5000-u', 'U-1', 'SUCCESS', 1, 1)`;
    // A raw pg error names the constraint itself (no Prisma wrapper).
    const refund = await thrown(() =>
      world.db.db.pool.query(`INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", status, "amountRefund", "amountTotal")
        VALUES ('RF-u', '5000-u', 'U-2', 'SUCCESS', 1, 1)`),
    );
    expect(classifyDbError(refund)).toEqual({ transient: true, code: "DB_CONFLICT", sqlstate: "23505" });
    const number = await thrown(
      () => prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal")
      VALUES ('u3', 'U-1', 'm', 'a', 1)`,
    );
    expect(toWorkerError(number)).toMatchObject({ code: "DB_CONSTRAINT", policy: "stop" });
  });

  it("an unrecognised error is retried as INTERNAL", () => {
    expect(toWorkerError(new TypeError("x is undefined"))).toMatchObject({ code: "INTERNAL", policy: "retry" });
    expect(toWorkerError(WorkerError.of("ORDER_NOT_FOUND", "x"))).toMatchObject({
      code: "ORDER_NOT_FOUND",
      policy: "window",
    });
  });
});

describe("errors of @wpn/wechatpay", () => {
  it("a key that does not fit is retried within the window; anything else about the notification is permanent", () => {
    for (const code of ["DECRYPT_FAILED", "V2_SIGN_INVALID", "KEY_INVALID"] as const) {
      expect(toWorkerError(new WechatPayError(code, "x"))).toMatchObject({ code, policy: "window" });
    }
    for (const code of ["PAYLOAD_INVALID", "ENVELOPE_INVALID", "XML_INVALID", "ALGORITHM_UNSUPPORTED"] as const) {
      expect(toWorkerError(new WechatPayError(code, "x"))).toMatchObject({ code, policy: "stop" });
    }
  });
});

describe("apply backoff", () => {
  it("doubles from 1 s with jitter in [50%, 100%] of the step", () => {
    for (const attemptsMade of [1, 2, 5]) {
      const max = 1_000 * 2 ** (attemptsMade - 1);
      expect(applyBackoffDelay({ attemptsMade, delay: 1_000, jitter: 0.5, random: () => 0 })).toBe(max / 2);
      expect(applyBackoffDelay({ attemptsMade, delay: 1_000, jitter: 0.5, random: () => 0.999_999 })).toBe(max - 1);
    }
  });

  it("never schedules past the deadline (the end of the unknown-order window), nor sooner than 100 ms", () => {
    const now = 1_000_000;
    expect(applyBackoffDelay({ attemptsMade: 10, delay: 1_000, deadline: now + 3_000, now })).toBe(3_000);
    expect(applyBackoffDelay({ attemptsMade: 1, delay: 1_000, deadline: now + 3_000, now })).toBe(1_000);
    expect(applyBackoffDelay({ attemptsMade: 3, delay: 1_000, deadline: now - 10, now })).toBe(100);
  });
});

describe("payload and settings checks", () => {
  it("an unknown payload version and a malformed payload are told apart", () => {
    expect(decodeJob(applyJobSchema, { v: 2 })).toMatchObject({ ok: false, code: "JOB_VERSION_UNSUPPORTED" });
    expect(decodeJob(applyJobSchema, { v: 1, notificationId: "" })).toMatchObject({ ok: false, code: "JOB_INVALID" });
    expect(decodeJob(applyJobSchema, "nonsense")).toMatchObject({ ok: false, code: "JOB_VERSION_UNSUPPORTED" });
  });

  it("a pool smaller than the batches' connections is refused; concurrency above the pool is fine", () => {
    const config = (env: Record<string, string>): Config => loadConfig({ ...world.env, ...env });
    expect(checkWorkerConfig(config({ PG_POOL_MAX: "3" }))).toMatch(/PG_POOL_MAX \(3\) must be at least 4/);
    expect(checkWorkerConfig(config({ WORKER_CONCURRENCY: "64", PG_POOL_MAX: "4" }))).toBeNull();
    expect(checkWorkerConfig(config({ WORKER_HEALTH_PORT: "65535", WORKER_INDEX: "1" }))).toMatch(/not a port/);
  });

  it("WeChat times: RFC 3339 with offset (v3) and China Standard Time without one (v2)", () => {
    expect(new Date(parseRfc3339("2018-06-08T10:34:56+08:00", "t")).toISOString()).toBe("2018-06-08T02:34:56.000Z");
    expect(new Date(parseCompactChinaTime("20140903131540", "t")).toISOString()).toBe("2014-09-03T05:15:40.000Z");
    expect(new Date(parseSpacedChinaTime("2017-11-25 15:36:17", "t")).toISOString()).toBe("2017-11-25T07:36:17.000Z");
    expect(() => parseCompactChinaTime("20141303131540", "t")).toThrow(WorkerError);
    expect(() => parseRfc3339("2018-06-08 10:34:56", "t")).toThrow(/RFC 3339/);
  });

  it("an impossible RFC 3339 time is PAYLOAD_INVALID, not rolled over to another instant", () => {
    for (const value of [
      "2018-02-30T10:00:00+08:00", // Date.parse: March 2
      "2018-02-29T10:00:00+08:00", // not a leap year
      "2018-06-08T24:00:00+08:00", // Date.parse: the next midnight
      "2018-06-08T10:60:00+08:00",
      "2018-06-08T10:00:60+08:00",
      "2018-13-01T10:00:00Z",
      "2018-06-00T10:00:00Z",
      "2018-06-08T10:00:00+24:00",
      "2018-06-08T10:00:00+08:60",
    ]) {
      expect(() => parseRfc3339(value, "success_time"), value).toThrow(
        expect.objectContaining({ code: "PAYLOAD_INVALID", policy: "stop" }),
      );
    }
    expect(new Date(parseRfc3339("2020-02-29T23:59:59.5-05:30", "t")).toISOString()).toBe("2020-03-01T05:29:59.500Z");
    expect(new Date(parseRfc3339("2018-12-31T00:00:00Z", "t")).toISOString()).toBe("2018-12-31T00:00:00.000Z");
  });
});
