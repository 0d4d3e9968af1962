import { createDb, type Db } from "@wpn/db";
import { APPLY_JOB_NAME, createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { type DbProxy, startDbProxy, TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freePort } from "../../../test/support/processes.ts";
import { DatabaseOutage, OUTAGES_MET_FIELD, outageEndedKey } from "../src/db-outage.ts";
import { prismaApplyStore } from "../src/domain/store.ts";
import { WorkerError } from "../src/errors.ts";
import { WorkerMetrics } from "../src/metrics.ts";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import {
  createWorld,
  inline,
  orderOf,
  quietLog,
  seedOrder,
  seedSkus,
  stockOf,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";
import { spawnWorker, stopWorker, type WorkerProcess } from "./support/processes.ts";
import { waitFor } from "./support/wait.ts";

/**
 * PostgreSQL going away under a running worker, and a worker started while it is away. The outage is a TCP proxy
 * in front of the shared server (it must not be stopped): down, it drops its connections and refuses new ones.
 * Before, each job tried during an outage used one of its attempts, so an outage longer than the attempts
 * dead-lettered every notification received meanwhile; and a worker started while PostgreSQL could not be reached
 * took jobs at once (MIGRATIONS_UNCHECKED, "starting anyway").
 */
let world: World;
let proxy: DbProxy;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let deadQueue: Queue;

beforeAll(async () => {
  world = await createWorld("outage");
  proxy = await startDbProxy(world.db.url);
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  deadQueue = createQueue(QueueName.Dead, redis, world.prefix);
  await seedSkus(world.prisma, { A: 100 });
});

afterAll(async () => {
  await Promise.all([parseQueue?.close(), applyQueue?.close(), deadQueue?.close()]);
  redis?.disconnect();
  await proxy?.close();
  await world?.cleanup();
});

// Each test's workers take only the jobs it adds: a job left queued by the one before (the running-worker test ends
// with one put back for the outage it met, due 2 s later) would be taken by the next test's workers and meet that
// test's outages too, counting in its DB_OUTAGE_PAUSES_EXHAUSTED lines and metrics when the timing lines up.
beforeEach(async () => {
  await Promise.all([parseQueue, applyQueue, deadQueue].map((queue) => queue.drain(true)));
});

/** Few attempts, retried at once: without the pause, a few failed tries dead-letter the job within a second. */
const SHORT_BUDGET = { attempts: 2, backoff: { type: "fixed", delay: 100 } } as const;

const count = (lines: string[], code: string) => lines.filter((l) => l.includes(`"code":"${code}"`)).length;

async function metric(worker: WorkerHandle, name: string): Promise<number> {
  const values = (await worker.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return values.reduce((sum, v) => sum + v.value, 0);
}

/** The codes of the waiting dead letters of a notification. */
async function lettersOf(notificationId: string): Promise<string[]> {
  const letters = await deadQueue.getJobs(["waiting"]);
  return letters.filter((letter) => letter.data.notificationId === notificationId).map((letter) => letter.data.code);
}

/** The outages a job met, as the worker stored them with the job (its BullMQ hash): null when it met none. */
async function outagesMet(queue: Queue, jobId: string): Promise<number | null> {
  const stored = await redis.hget(`${queue.qualifiedName}:${jobId}`, OUTAGES_MET_FIELD);
  return stored === null ? null : Number(stored);
}

describe("DatabaseOutage", () => {
  it("pauses only when a probe confirms PostgreSQL does not answer, once, and resumes when it answers again", async () => {
    const db = createDb({ url: proxy.via(world.db.url), poolMax: 2, connectTimeoutMs: 1_000 });
    const calls: string[] = [];
    const consumer = {
      pause: async (doNotWaitActive: boolean) => void calls.push(`pause(${doNotWaitActive})`),
      resume: async () => void calls.push("resume"),
    };
    const { logger, lines } = capturedLog();
    const metrics = new WorkerMetrics();
    const outage = new DatabaseOutage({
      probe: () => db.pool.query("SELECT 1"),
      consumers: () => [consumer],
      log: logger,
      metrics,
      probeIntervalMs: 200,
      redis,
      maxPauses: 10,
      endedKey: outageEndedKey(world.prefix),
    });
    const failure = new WorkerError("DB_UNAVAILABLE", "retry", "Connection terminated unexpectedly");
    // Another process, which meets no outage itself.
    const elsewhere = new DatabaseOutage({
      probe: async () => undefined,
      consumers: () => [],
      log: logger,
      metrics: new WorkerMetrics(),
      redis,
      maxPauses: 10,
      endedKey: outageEndedKey(world.prefix),
    });
    try {
      // PostgreSQL answers: the failure was not an outage (an ordinary attempt), nothing pauses.
      expect(await outage.confirm(failure)).toBe(false);
      expect({ paused: outage.paused, calls }).toEqual({ paused: false, calls: [] });
      expect([outage.endedAt, await elsewhere.readEnded()]).toEqual([0, 0]);

      await proxy.down();
      const confirmed = await Promise.all([outage.confirm(failure), outage.confirm(failure)]);
      expect(confirmed).toEqual([true, true]);
      expect(await outage.confirm(failure)).toBe(true);
      expect({ paused: outage.paused, calls, outages: count(lines, "DB_OUTAGE") }).toEqual({
        paused: true,
        calls: ["pause(true)"],
        outages: 1,
      });
      expect((await metrics.dbPaused.get()).values[0]?.value).toBe(1);
      // Not over while paused: the unknown-order window goes on from now.
      const whilePaused = Date.now();
      expect(outage.endedAt).toBeGreaterThanOrEqual(whilePaused);

      await proxy.up();
      await waitFor("resumed", async () => !outage.paused, 5_000);
      await waitFor("consumers resumed", async () => calls.includes("resume"), 1_000);
      expect(calls).toEqual(["pause(true)", "resume"]);
      // Its end, recorded for the other processes, which learn it when they read it.
      const endedAt = outage.endedAt;
      expect(endedAt).toBeGreaterThan(whilePaused);
      expect(endedAt).toBeLessThanOrEqual(Date.now());
      expect(Number(await redis.get(outageEndedKey(world.prefix)))).toBe(endedAt);
      expect(elsewhere.endedAt).toBe(0);
      expect(await elsewhere.readEnded()).toBe(endedAt);
      expect(elsewhere.endedAt).toBe(endedAt);
      expect(count(lines, "DB_RECOVERED")).toBe(1);
      expect((await metrics.dbPaused.get()).values[0]?.value).toBe(0);
      expect((await metrics.dbOutages.get()).values[0]?.value).toBe(1);
    } finally {
      outage.close();
      await proxy.up();
      await db.close();
    }
  }, 30_000);
});

describe("DatabaseOutage.countOutage", () => {
  it("counts in the job's own hash, and leaves no key behind for a job already removed", async () => {
    const { logger } = capturedLog();
    const outage = new DatabaseOutage({
      probe: async () => undefined,
      consumers: () => [],
      log: logger,
      metrics: new WorkerMetrics(),
      redis,
      maxPauses: 10,
      endedKey: outageEndedKey(world.prefix),
    });
    const job = await applyQueue.add(APPLY_JOB_NAME, { any: 1 }, { jobId: "count-outage-kept" });
    expect([await outage.countOutage(job), await outage.countOutage(job)]).toEqual([1, 2]);
    expect(await outagesMet(applyQueue, "count-outage-kept")).toBe(2);
    // Removed meanwhile: a hash holding the counter alone would pass for the job, and a later add of its id add nothing.
    await job.remove();
    expect(await outage.countOutage(job)).toBe(0);
    expect(await redis.exists(`${job.queueQualifiedName}:${job.id}`)).toBe(0);
  });
});

describe("a running worker when PostgreSQL stops answering", () => {
  it("pauses instead of using attempts, is not ready meanwhile, and applies every job once after recovery; close() does not hang while paused", async () => {
    const orders = await Promise.all([1, 2, 3, 4].map(() => seedOrder(world, { amountTotal: 100, items: { A: 1 } })));
    const payments = orders.map((outTradeNo) => v3Payment(world, { outTradeNo, total: 100 }));
    // Two already parsed (their rows recorded while PostgreSQL answered), to meet the outage in the apply stage.
    const parsed = await inline(world).parse(payments[2]!);
    const parsed2 = await inline(world).parse(payments[3]!);
    await proxy.down();
    for (const job of payments.slice(0, 2))
      await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id, ...SHORT_BUDGET });
    for (const { applyJob } of [parsed, parsed2]) {
      await applyQueue.add(APPLY_JOB_NAME, applyJob!, { jobId: applyJob!.notificationId, ...SHORT_BUDGET });
    }
    // Started with the jobs waiting, so that both stages take theirs before the first failure pauses them.
    const { logger, lines } = capturedLog();
    // The tightest bound that still puts jobs back: one outage, however long, puts a job back once per process.
    const config = world.config({ DATABASE_URL: proxy.via(world.db.url), WORKER_DB_OUTAGE_MAX_PAUSES: "1" });
    const worker = await startWorker(config, { logger, healthPort: 0 });
    let closed = false;
    try {
      await waitFor("DB_OUTAGE logged", async () => count(lines, "DB_OUTAGE") === 1, 15_000);
      // Longer than the attempts would have lasted (two tries 100 ms apart), several probes of the pause.
      await new Promise((r) => setTimeout(r, 5_000));
      expect(await deadQueue.getJobCounts("waiting", "failed")).toEqual({ waiting: 0, failed: 0 });
      for (const queue of [parseQueue, applyQueue]) {
        for (const job of await queue.getJobs(["waiting", "delayed", "active", "failed", "completed"])) {
          expect({ id: job.id, attemptsMade: job.attemptsMade }).toEqual({ id: job.id, attemptsMade: 0 });
          expect([null, 1], job.id).toContain(await outagesMet(queue, job.id ?? ""));
        }
      }
      expect(count(lines, "DB_OUTAGE")).toBe(1);
      expect(count(lines, "DB_OUTAGE_PAUSES_EXHAUSTED")).toBe(0);
      expect(await metric(worker, "wpn_worker_db_paused")).toBe(1);
      expect(await metric(worker, "wpn_worker_db_outages_total")).toBe(1);
      const deferred = (await worker.metrics.dbDeferred.get()).values;
      for (const queue of [QueueName.Parse, QueueName.Apply]) {
        expect(deferred.find((v) => v.labels.queue === queue)?.value, queue).toBeGreaterThanOrEqual(1);
      }
      const ready = await fetch(`http://127.0.0.1:${worker.healthPort}/health/ready`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { checks: Record<string, string> }).checks.workers).toMatch(/paused/);

      await proxy.up();
      for (const outTradeNo of orders) {
        await waitFor(`${outTradeNo} paid`, async () => (await orderOf(world.prisma, outTradeNo)).status === "SUCCESS");
      }
      await waitFor("all jobs completed", async () => {
        const [p, a] = await Promise.all([parseQueue.getCompletedCount(), applyQueue.getCompletedCount()]);
        return p === 2 && a === 4;
      });
      // Each job's wait before its first run is observed once, not again each time the outage put it back.
      const waits = (await worker.metrics.waiting.get()).values.filter((v) => v.metricName?.endsWith("_count"));
      expect(Object.fromEntries(waits.map((v) => [v.labels.queue, v.value]))).toEqual({
        [QueueName.Parse]: 2,
        [QueueName.Apply]: 4,
      });
      // Applied exactly once: one movement per order, the stock taken once per order.
      for (const outTradeNo of orders) expect((await orderOf(world.prisma, outTradeNo)).movements).toHaveLength(1);
      expect((await stockOf(world.prisma)).A).toBe(96);
      const statuses = await world.prisma.notification.findMany({ select: { status: true } });
      expect(statuses.map((n) => n.status)).toEqual(["APPLIED", "APPLIED", "APPLIED", "APPLIED"]);
      expect(await deadQueue.count()).toBe(0);
      expect(count(lines, "DB_RECOVERED")).toBe(1);
      expect(await metric(worker, "wpn_worker_db_paused")).toBe(0);
      await waitFor("ready again", async () => {
        const res = await fetch(`http://127.0.0.1:${worker.healthPort}/health/ready`);
        return res.status === 200;
      });

      // Down again, with a job to meet it: paused once more, and a shutdown meanwhile returns promptly.
      await proxy.down();
      const late = v3Payment(world, { outTradeNo: await seedOrder(world, { amountTotal: 100, items: { A: 1 } }) });
      await parseQueue.add(PARSE_JOB_NAME, late, { jobId: late.id, ...SHORT_BUDGET });
      await waitFor("second DB_OUTAGE", async () => count(lines, "DB_OUTAGE") === 2, 15_000);
      const started = Date.now();
      closed = true;
      await worker.close();
      expect(Date.now() - started).toBeLessThan(3_000);
      expect((await parseQueue.getJob(late.id))?.attemptsMade).toBe(0);
      expect(await deadQueue.count()).toBe(0);
    } finally {
      if (!closed) await worker.close();
      await proxy.up();
    }
  }, 60_000);
});

describe("a notification waiting within the unknown-order window when PostgreSQL stops answering", () => {
  it("is not dead-lettered for an outage longer than the window: its window goes on from the recovery", async () => {
    // A refund delivered before its payment (ORDER_NOT_PAID, retried within the window), and its payment acknowledged
    // by the ingress during the outage: after the recovery, the payment still has parse and apply ahead of it while
    // the refund is tried again. Before, the outage used up the refund's window and that try dead-lettered it.
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const transactionId = "4200009000000000001";
    const refund = v3Refund(world, { outTradeNo, transactionId, refund: 100, total: 100 });
    const payment = v3Payment(world, { outTradeNo, transactionId, total: 100 });
    const { applyJob } = await inline(world).parse(refund);
    const notification = (id: string) => world.prisma.notification.findUnique({ where: { id } });
    const { logger, lines } = capturedLog();
    const config = world.config({ DATABASE_URL: proxy.via(world.db.url), WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "2" });
    const worker = await startWorker(config, { logger, healthPort: 0 });
    try {
      await applyQueue.add(APPLY_JOB_NAME, applyJob!, { jobId: applyJob!.notificationId });
      await waitFor("ORDER_NOT_PAID", async () => (await notification(refund.id))?.errorCode === "ORDER_NOT_PAID");
      await proxy.down();
      const downAt = Date.now();
      await parseQueue.add(PARSE_JOB_NAME, payment, { jobId: payment.id });
      await waitFor("DB_OUTAGE logged", async () => count(lines, "DB_OUTAGE") === 1, 15_000);
      // Twice the window.
      await new Promise((r) => setTimeout(r, downAt + 4_000 - Date.now()));
      await proxy.up();

      const settled = ["APPLIED", "DEAD"];
      await waitFor("both settled", async () => {
        const rows = await Promise.all([notification(payment.id), notification(refund.id)]);
        return rows.every((n) => n !== null && settled.includes(n.status));
      });
      expect(await lettersOf(refund.id)).toEqual([]);
      expect((await notification(refund.id))?.status).toBe("APPLIED");
      const order = await orderOf(world.prisma, outTradeNo);
      expect({ status: order.status, refunds: order.refunds.length }).toEqual({ status: "REFUND", refunds: 1 });
    } finally {
      await worker.close();
      await proxy.up();
    }
  }, 60_000);
});

describe("a notification waiting within the unknown-order window, taken after an outage by a process that did not meet it", () => {
  it("has its window go on from the outage's end another process recorded", async () => {
    // A refund received before the outage and still waiting for its payment, taken after the outage by a process
    // started after it (a restart, another host; one that took no job during the outage never paused either), which
    // knows of the outage only through Redis.
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const transactionId = "4200009000000000002";
    const refund = v3Refund(world, { outTradeNo, transactionId, refund: 100, total: 100 });
    const { applyJob } = await inline(world).parse(refund);
    const other = v3Payment(world, { outTradeNo: await seedOrder(world, { amountTotal: 100, items: { A: 1 } }) });
    const notification = (id: string) => world.prisma.notification.findUnique({ where: { id } });
    const window = { WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "3" };
    const { logger, lines } = capturedLog();
    const met = await startWorker(world.config({ ...window, DATABASE_URL: proxy.via(world.db.url) }), {
      logger,
      healthPort: 0,
    });
    let later: WorkerHandle | null = null;
    try {
      await proxy.down();
      // Received 2.5 s before the outage: its window, counted from then, ends during the outage.
      const receivedAt = Date.now() - 2_500;
      await parseQueue.add(PARSE_JOB_NAME, other, { jobId: other.id });
      await waitFor("DB_OUTAGE logged", async () => count(lines, "DB_OUTAGE") === 1, 15_000);
      await new Promise((r) => setTimeout(r, receivedAt + 3_500 - Date.now()));
      await proxy.up();
      await waitFor("DB_RECOVERED logged", async () => count(lines, "DB_RECOVERED") === 1);
      await met.close();

      later = await startWorker(world.config(window), { logger: quietLog, healthPort: 0 });
      await applyQueue.add(APPLY_JOB_NAME, applyJob!, { jobId: applyJob!.notificationId, timestamp: receivedAt });
      await waitFor("ORDER_NOT_PAID", async () => (await notification(refund.id))?.errorCode === "ORDER_NOT_PAID");
      const payment = v3Payment(world, { outTradeNo, transactionId, total: 100 });
      await parseQueue.add(PARSE_JOB_NAME, payment, { jobId: payment.id });
      await waitFor("refund settled", async () =>
        ["APPLIED", "DEAD"].includes((await notification(refund.id))?.status ?? ""),
      );
      expect(await lettersOf(refund.id)).toEqual([]);
      expect((await orderOf(world.prisma, outTradeNo)).status).toBe("REFUND");
    } finally {
      await met.close();
      await later?.close();
      await proxy.up();
    }
  }, 60_000);
});

describe("a job whose own statement brings PostgreSQL down", () => {
  it("is put back WORKER_DB_OUTAGE_MAX_PAUSES times, counted with the job across a restart, then uses its attempts and is dead-lettered", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const { applyJob } = await inline(world).parse(v3Payment(world, { outTradeNo, total: 100 }));
    const jobId = applyJob!.notificationId;
    // Its statement ends its own backend (as a statement that crashes PostgreSQL, or one an administrator's
    // pg_terminate_backend stops), and the database then refuses connections for a moment (a crashed server's
    // recovery): the probe that follows fails, so the failure looks like an outage every time the job runs.
    let crashes = 0;
    const recoveries: Promise<void>[] = [];
    const crashingStore = (db: Db) => {
      const store = prismaApplyStore(db.prisma);
      return {
        ...store,
        payments: async (facts: Parameters<typeof store.payments>[0]) => {
          if (!facts.some((f) => f.outTradeNo === outTradeNo)) return store.payments(facts);
          crashes++;
          try {
            await db.prisma.$queryRaw`SELECT pg_terminate_backend(pg_backend_pid())`;
          } finally {
            await proxy.down();
            recoveries.push(new Promise((r) => setTimeout(r, 1_000)).then(() => proxy.up()));
          }
          throw new Error("pg_terminate_backend returned");
        },
      };
    };
    const config = world.config({ DATABASE_URL: proxy.via(world.db.url), WORKER_DB_OUTAGE_MAX_PAUSES: "2" });
    const { logger, lines } = capturedLog();
    await applyQueue.add(APPLY_JOB_NAME, applyJob!, { jobId, ...SHORT_BUDGET });

    // The first process meets one such outage, and stops (a deploy, a crash): the next one goes on counting.
    const first = await startWorker(config, { logger, healthPort: 0, applyStore: crashingStore });
    try {
      await waitFor(
        "the first crash put back",
        async () => crashes === 1 && (await applyQueue.getJob(jobId))?.isDelayed(),
      );
    } finally {
      await first.close();
    }
    await Promise.all(recoveries);
    expect((await applyQueue.getJob(jobId))?.attemptsMade).toBe(0);

    const second = await startWorker(config, { logger, healthPort: 0, applyStore: crashingStore });
    try {
      await waitFor("dead letter", async () => (await deadQueue.count()) === 1, 45_000).catch((error: Error) => {
        throw new Error(`${error.message}; the job crashed PostgreSQL ${crashes} times`);
      });
      // Two pauses (one in each process: the second went on from the first's count), then the job's 2 attempts: 4
      // crashes, not one every few seconds for ever.
      const [letter] = await deadQueue.getJobs(["waiting"]);
      expect({ code: letter?.data.code, attemptsMade: letter?.data.attemptsMade }).toEqual({
        code: "DB_UNAVAILABLE",
        attemptsMade: 2,
      });
      expect(crashes).toBe(4);
      expect(await outagesMet(applyQueue, jobId)).toBe(4);
      expect(count(lines, "DB_OUTAGE_PAUSES_EXHAUSTED")).toBe(2);
      const exhausted = lines.find((l) => l.includes('"code":"DB_OUTAGE_PAUSES_EXHAUSTED"'));
      expect(JSON.parse(exhausted ?? "{}")).toMatchObject({ level: 40, jobId, outagesMet: 3, maxPauses: 2 });
      expect(await metric(second, "wpn_worker_db_outage_pauses_exhausted_total")).toBe(2);
      expect(await metric(second, "wpn_worker_db_deferred_jobs_total")).toBe(1);
      await waitFor(
        "notification DEAD",
        async () => (await world.prisma.notification.findUnique({ where: { id: jobId } }))?.status === "DEAD",
        15_000,
      );
      expect((await orderOf(world.prisma, outTradeNo)).movements).toHaveLength(0);
    } finally {
      await second.close();
      await Promise.all(recoveries);
      await proxy.up();
    }
  }, 90_000);
});

describe("a worker process started while PostgreSQL cannot be reached", () => {
  let started: WorkerProcess | null = null;
  afterAll(async () => {
    if (started) await stopWorker(started, 5_000);
    await proxy.up();
  });

  it("takes no job until PostgreSQL answers (live, not ready, MIGRATIONS_UNCHECKED each try), then starts and applies it", async () => {
    await proxy.down();
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo, total: 100 });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    const healthPort = await freePort();
    const worker = spawnWorker(
      { ...world.env, DATABASE_URL: proxy.via(world.db.url), WORKER_HEALTH_PORT: String(healthPort) },
      0,
    );
    started = worker;
    // Two tries, 1 s apart: the process waits rather than starting.
    await waitFor(
      "two MIGRATIONS_UNCHECKED",
      async () => count(worker.output().split("\n"), "MIGRATIONS_UNCHECKED") >= 2,
    );
    expect(worker.child.exitCode).toBeNull();
    const waits = worker
      .output()
      .split("\n")
      .filter((l) => l.includes('"code":"MIGRATIONS_UNCHECKED"'))
      .map((l) => JSON.parse(l) as { level: number; retryInMs: number });
    // At warn, 1 s then doubling.
    expect(waits.slice(0, 2)).toEqual([
      { ...waits[0], level: 40, retryInMs: 1_000 },
      { ...waits[1], level: 40, retryInMs: 2_000 },
    ]);
    expect(await (await parseQueue.getJob(job.id))?.getState()).toBe("waiting");
    expect((await parseQueue.getJob(job.id))?.attemptsMade).toBe(0);
    expect((await fetch(`http://127.0.0.1:${healthPort}/health/live`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${healthPort}/health/ready`)).status).toBe(503);
    // What the scrape says meanwhile: paused, and the PublishOverflow rows not counted (-1), as when PostgreSQL does
    // not answer a scrape later on — not 0, which would say no stored event waits.
    const scraped = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
    const sample = (name: string) => Number(new RegExp(`^${name} (-?\\d+)$`, "m").exec(scraped)?.[1]);
    expect([sample("wpn_worker_db_paused"), sample("wpn_worker_publish_overflow_rows")]).toEqual([1, -1]);

    await proxy.up();
    await waitFor(
      "payment applied",
      async () => (await orderOf(world.prisma, outTradeNo)).status === "SUCCESS",
      20_000,
    );
    expect((await orderOf(world.prisma, outTradeNo)).movements).toHaveLength(1);
    expect(await stopWorker(worker)).toEqual({ code: 0, signal: null });
    started = null;
  }, 60_000);

  it("exits 0 promptly on SIGTERM while it waits", async () => {
    await proxy.down();
    const worker = spawnWorker({ ...world.env, DATABASE_URL: proxy.via(world.db.url) }, 0);
    started = worker;
    await waitFor("MIGRATIONS_UNCHECKED", async () => worker.output().includes('"code":"MIGRATIONS_UNCHECKED"'));
    const t0 = Date.now();
    expect(await stopWorker(worker, 5_000)).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(2_000);
    started = null;
  }, 30_000);
});
