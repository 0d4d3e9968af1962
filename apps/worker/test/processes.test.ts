import { randomInt, randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Prisma } from "@wpn/db";
import { createQueue, createRedisConnection, PARSE_JOB_NAME, type ParseJob, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createWorld,
  seedOrders,
  seedSkus,
  V2_PAYER_OPENID,
  v2Payment,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";
import { spawnWorker, stopWorker, type WorkerProcess } from "./support/processes.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Whole-system checks with real worker processes (as `npm start` runs them) on one Redis and one database:
 * at-least-once delivery from both sides, shuffled order, concurrent processes, a process killed mid-run.
 */

interface Scenario {
  world: World;
  /** Notification ids expected to settle, and the initial stock per SKU. */
  ids: Set<string>;
  initialStock: Record<string, number>;
  refunded: Set<string>;
  jobs: { name: string; data: ParseJob; opts: { jobId: string } }[];
}

const SKUS = Array.from({ length: 30 }, (_, i) => `S${String(i).padStart(2, "0")}`);

/**
 * `orders` orders of two items each (10% include the scarce SKU HOT, so some end OUT_OF_STOCK), one payment
 * per order (v3, 1 in 7 v2), full refunds for `refunds` of them, then duplicates up to `deliveries` in all: the same transaction under a new notification id, the same notification re-enqueued under
 * another BullMQ job id (as after BullMQ's retention dropped the first), and duplicate refunds. Shuffled.
 */
async function buildScenario(world: World, orders: number, refunds: number, deliveries: number): Promise<Scenario> {
  const initialStock: Record<string, number> = Object.fromEntries(SKUS.map((s) => [s, 1_000]));
  initialStock.HOT = 40;
  await seedSkus(world.prisma, initialStock);
  const unique: Scenario["jobs"] = [];
  const payments: { job: ParseJob; outTradeNo: string; transactionId: string; total: number }[] = [];
  const seeds = Array.from({ length: orders }, (_, i) => {
    const a = SKUS[randomInt(SKUS.length)]!;
    const b = i % 10 === 0 ? "HOT" : SKUS.filter((s) => s !== a)[randomInt(SKUS.length - 1)]!;
    const items = { [a]: randomInt(1, 4), [b]: randomInt(1, 4) };
    return { outTradeNo: `T${randomUUID().slice(0, 13)}`, amountTotal: 100 * randomInt(1, 50), items };
  });
  await seedOrders(world, seeds);
  for (const [i, { outTradeNo, amountTotal: total }] of seeds.entries()) {
    const transactionId = `4200${String(i).padStart(10, "0")}`;
    const job =
      i % 7 === 3
        ? v2Payment(world, { outTradeNo, transactionId, total })
        : v3Payment(world, { outTradeNo, transactionId, total });
    payments.push({ job, outTradeNo, transactionId, total });
    unique.push({ name: PARSE_JOB_NAME, data: job, opts: { jobId: job.id } });
  }
  const refunded = new Set<string>();
  const refundJobs: ParseJob[] = [];
  for (const p of payments.slice(0, refunds)) {
    const job = v3Refund(world, {
      outTradeNo: p.outTradeNo,
      transactionId: p.transactionId,
      refund: p.total,
      total: p.total,
      outRefundNo: `RF${p.transactionId}`,
    });
    refunded.add(p.outTradeNo);
    refundJobs.push(job);
    unique.push({ name: PARSE_JOB_NAME, data: job, opts: { jobId: job.id } });
  }
  const duplicates: Scenario["jobs"] = [];
  const wanted = deliveries - unique.length;
  for (let i = 0; duplicates.length < wanted; i++) {
    const p = payments[randomInt(payments.length)]!;
    if (i % 4 === 0) {
      // Same notification delivered again after its BullMQ job was trimmed: same id, new BullMQ job.
      duplicates.push({
        name: PARSE_JOB_NAME,
        data: p.job,
        opts: { jobId: `${p.job.id.replaceAll(":", ".")}.again${i}` },
      });
    } else if (i % 4 === 1 && refundJobs.length > 0) {
      const r = refundJobs[randomInt(refundJobs.length)]!;
      duplicates.push({ name: PARSE_JOB_NAME, data: r, opts: { jobId: `${r.id}.again${i}` } });
    } else {
      // The same payment reported again, on APIv3 whatever API the first report used: with the same facts, payer
      // included (a direct merchant's user has one openid under its appid on both APIs; other facts would make it a
      // DUPLICATE_MISMATCH review, not a duplicate).
      const again = v3Payment(world, {
        outTradeNo: p.outTradeNo,
        transactionId: p.transactionId,
        total: p.total,
        id: randomUUID(),
        ...(p.job.api === "v2" ? { fields: { payer: { openid: V2_PAYER_OPENID } } } : {}),
      });
      duplicates.push({ name: PARSE_JOB_NAME, data: again, opts: { jobId: again.id } });
    }
  }
  const jobs = [...unique, ...duplicates];
  for (let i = jobs.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
  }
  return { world, ids: new Set(jobs.map((j) => j.data.id)), initialStock, refunded, jobs };
}

async function enqueueAll(queue: Queue, jobs: Scenario["jobs"]): Promise<void> {
  for (let i = 0; i < jobs.length; i += 200) await queue.addBulk(jobs.slice(i, i + 200));
}

async function settledCount(world: World): Promise<number> {
  return world.prisma.notification.count({ where: { status: { in: ["APPLIED", "DUPLICATE", "REVIEW", "IGNORED"] } } });
}

/** Checks the end state against what in-order, exactly-once processing must produce. */
async function expectConsistent(s: Scenario): Promise<void> {
  // One REPEATABLE READ snapshot for every read below: orders, movements and stock are compared as of one
  // instant, so a late no-op job committing between two reads cannot make a consistent state look drifted.
  await s.world.prisma.$transaction((prisma) => checkSnapshot(prisma, s), {
    isolationLevel: "RepeatableRead",
    timeout: 60_000,
  });
}

async function checkSnapshot(prisma: Prisma.TransactionClient, s: Scenario): Promise<void> {
  const notifications = await prisma.notification.groupBy({ by: ["status"], _count: true });
  expect(notifications.filter((n) => !["APPLIED", "DUPLICATE", "REVIEW"].includes(n.status))).toEqual([]);
  expect(notifications.reduce((sum, n) => sum + n._count, 0)).toBe(s.ids.size);

  const orders = await prisma.order.findMany({ include: { items: true, movements: true, refunds: true } });
  const taken: Record<string, number> = {};
  for (const o of orders) {
    const payment = o.movements.filter((m) => m.reason === "PAYMENT");
    const restock = o.movements.filter((m) => m.reason === "REFUND");
    const items = Object.fromEntries(o.items.map((i) => [i.skuId, i.quantity]));
    if (o.reviewReason === "OUT_OF_STOCK") {
      expect(
        o.items.some((i) => i.skuId === "HOT"),
        `order ${o.outTradeNo} out of stock without the scarce SKU`,
      ).toBe(true);
      expect(payment).toHaveLength(0);
    } else {
      // Paid and served: exactly one PAYMENT movement per item, for its quantity.
      expect(Object.fromEntries(payment.map((m) => [m.skuId, -m.delta]))).toEqual(items);
    }
    expect(o.transactionId).not.toBeNull();
    if (s.refunded.has(o.outTradeNo)) {
      expect(o).toMatchObject({ status: "REFUND", refundedTotal: o.amountTotal });
      expect(o.refunds).toHaveLength(1);
      expect(Object.fromEntries(restock.map((m) => [m.skuId, m.delta]))).toEqual(
        Object.fromEntries(payment.map((m) => [m.skuId, -m.delta])),
      );
    } else {
      expect(o.status).toBe(o.reviewReason === "OUT_OF_STOCK" ? "PAYMENT_REVIEW" : "SUCCESS");
      expect(restock).toHaveLength(0);
    }
    for (const m of o.movements) taken[m.skuId] = (taken[m.skuId] ?? 0) - m.delta;
  }
  const stock = Object.fromEntries((await prisma.sku.findMany()).map((k) => [k.id, k.stock]));
  for (const [sku, initial] of Object.entries(s.initialStock)) {
    expect(stock[sku], `stock of ${sku}`).toBe(initial - (taken[sku] ?? 0));
    expect(stock[sku]).toBeGreaterThanOrEqual(0);
  }
  // Each transaction was applied by exactly one of its notifications.
  const byTransaction = await prisma.notification.groupBy({
    by: ["transactionId"],
    where: { eventType: "TRANSACTION.SUCCESS", status: { in: ["APPLIED", "REVIEW"] } },
    _count: true,
  });
  expect(byTransaction.filter((t) => t._count !== 1)).toEqual([]);
  expect(byTransaction).toHaveLength(orders.length);
}

/**
 * Freezes the process (SIGSTOP: the jobs it holds cannot change while it is stopped) and SIGKILLs it if it holds
 * an active job on one of `queues`; otherwise lets it run on (SIGCONT) and tries again. A kill between two jobs
 * would leave nothing to recover. Returns the jobs it held (a parse and an apply job can share an id), which must
 * stall and run elsewhere.
 */
async function killHoldingJobs(worker: WorkerProcess, queues: Queue[]): Promise<{ id: string; queue: Queue }[]> {
  const name = `${hostname()}:${worker.child.pid}`;
  return waitFor(
    "the worker to hold an active job",
    async () => {
      worker.child.kill("SIGSTOP");
      const held: { id: string; queue: Queue }[] = [];
      try {
        // Commands it wrote just before it stopped (a job's completion) reach Redis before the read below.
        await new Promise((r) => setTimeout(r, 50));
        for (const queue of queues) {
          const active = await queue.getActive();
          for (const job of active) if (job.processedBy === name && job.id) held.push({ id: job.id, queue });
        }
      } finally {
        // Never leave it frozen: a read that failed lets it run on like one that found nothing.
        worker.child.kill(held.length > 0 ? "SIGKILL" : "SIGCONT");
      }
      return held.length > 0 ? held : null;
    },
    30_000,
    10,
  );
}

let redis: Redis;
beforeAll(() => {
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
});
afterAll(() => redis.disconnect());

describe("worker processes", () => {
  it("1,000 notifications (30% duplicates, shuffled, refunds before payments) on 4 processes: every order right, stock exact", async () => {
    const world = await createWorld("wproc");
    const workers: WorkerProcess[] = [];
    const queue = createQueue(QueueName.Parse, redis, world.prefix);
    try {
      // 630 payments + 70 refunds, and 300 duplicates (30% of the 1,000 deliveries).
      const s = await buildScenario(world, 630, 70, 1_000);
      expect(s.jobs).toHaveLength(1_000);
      await enqueueAll(queue, s.jobs);
      const env = {
        ...world.env,
        WORKER_CONCURRENCY: "4",
        PG_POOL_MAX: "4",
        WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "120",
      };
      for (let i = 0; i < 4; i++) workers.push(spawnWorker(env, i));
      await waitFor("every notification settled", async () => (await settledCount(world)) === s.ids.size, 120_000, 250);
      await expectConsistent(s);
      // Shuffling did deliver refunds before their payments (retried until the payment landed).
      const early = await world.prisma.$queryRaw<{ n: number }[]>`
        SELECT count(*)::int AS n FROM "NotificationEvent" WHERE kind = 'FAILED' AND detail->>'code' = 'ORDER_NOT_PAID'`;
      expect(early[0]?.n).toBeGreaterThan(0);
      const exits = await Promise.all(workers.map((w) => stopWorker(w)));
      expect(
        exits,
        workers
          .map((w) => w.output())
          .join("\n")
          .slice(-3_000),
      ).toEqual(workers.map(() => ({ code: 0, signal: null })));
    } finally {
      await Promise.all(workers.map((w) => stopWorker(w)));
      await queue.close();
      await world.cleanup();
    }
  }, 170_000);

  it("a worker SIGKILLed mid-run loses nothing and doubles nothing: its stalled jobs re-run elsewhere", async () => {
    const world = await createWorld("wkill");
    const workers: WorkerProcess[] = [];
    const queue = createQueue(QueueName.Parse, redis, world.prefix);
    const applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
    try {
      const s = await buildScenario(world, 300, 20, 420);
      const env = {
        ...world.env,
        WORKER_CONCURRENCY: "4",
        PG_POOL_MAX: "4",
        // Every process looks for stalled jobs twice a second: the killed worker's are found soon after its locks expire.
        WORKER_STALLED_INTERVAL_MS: "500",
        WORKER_SHUTDOWN_TIMEOUT_MS: "5000",
      };
      // A job's lock lasts as long as the worker holding it says (each renewal sets its TTL), so only the worker to be
      // killed gets a short one: its jobs stall about 2 s after the kill. The survivors keep the default 30 s: with a
      // 2 s lock, renewed each second, a survivor starved of CPU (a loaded host) lost its own locks by the hundred,
      // its healthy jobs stalled again and again, and past WORKER_MAX_STALLED_COUNT (3) were failed
      // JOB_STALLED_TOO_OFTEN — held jobs among them, which then never completed.
      for (let i = 0; i < 3; i++)
        workers.push(spawnWorker(i === 0 ? { ...env, WORKER_LOCK_DURATION_MS: "2000" } : env, i));
      // Every process must be taking jobs before they arrive: otherwise the first one up can do the first quarter
      // alone, and the process killed below holds no job whose stall the others would have to recover.
      await waitFor("3 workers on the parse queue", async () => (await queue.getWorkersCount()) === 3, 60_000, 50);
      await enqueueAll(queue, s.jobs);
      await waitFor("a quarter done", async () => (await settledCount(world)) >= s.ids.size / 4, 60_000, 20);
      const held = await killHoldingJobs(workers[0]!, [queue, applyQueue]);
      expect(await workers[0]!.exited).toEqual({ code: null, signal: "SIGKILL" });
      await waitFor("every notification settled", async () => (await settledCount(world)) === s.ids.size, 120_000, 250);
      // A held job whose transaction committed just before the kill settles its notification at once; its stall
      // is detected only once its lock has expired (WORKER_LOCK_DURATION_MS) and then it runs again elsewhere,
      // as a no-op. So wait for every held job to be logged stalled by a survivor and to complete, then check.
      const survivors = workers.slice(1);
      // Complete lines only: the last one may still be arriving.
      const stalled = () =>
        survivors
          .flatMap((w) => w.output().split("\n").slice(0, -1))
          .filter((line) => line.includes('"code":"JOB_STALLED"'))
          .map((line) => (JSON.parse(line) as { jobId: string }).jobId);
      await waitFor(
        "a survivor to log JOB_STALLED for every held job",
        async () => held.every((job) => stalled().includes(job.id)),
        60_000,
      );
      // 60 s like the waits above: a re-run that meets a conflict is retried with backoff, and on a loaded machine
      // (the whole suite beside other work) that takes longer — this wait once ran out at 15 s in an 85 s run.
      let states: (string | undefined)[] = [];
      await waitFor(
        "every held job to run again and complete",
        async () => {
          states = await Promise.all(held.map(async (job) => (await job.queue.getJob(job.id))?.getState()));
          return states.every((state) => state === "completed");
        },
        60_000,
      ).catch((error: unknown) => {
        const jobs = held.map((job, i) => `${job.queue.name}:${job.id}=${states[i]}`).join(" ");
        throw new Error(`${String(error)}; held jobs: ${jobs}`);
      });
      await expectConsistent(s);
      const exits = await Promise.all(survivors.map((w) => stopWorker(w)));
      expect(exits).toEqual(survivors.map(() => ({ code: 0, signal: null })));
    } finally {
      await Promise.all(workers.map((w) => stopWorker(w)));
      await queue.close();
      await applyQueue.close();
      await world.cleanup();
    }
  }, 170_000);

  it("SIGTERM mid-run: stops taking jobs, finishes the running ones, exits 0; nothing is left active", async () => {
    const world = await createWorld("wterm");
    const queue = createQueue(QueueName.Parse, redis, world.prefix);
    const applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
    let worker: WorkerProcess | null = null;
    try {
      const s = await buildScenario(world, 300, 0, 300);
      await enqueueAll(queue, s.jobs);
      worker = spawnWorker(
        { ...world.env, WORKER_CONCURRENCY: "4", PG_POOL_MAX: "4", WORKER_SHUTDOWN_TIMEOUT_MS: "10000" },
        0,
      );
      await waitFor("some done", async () => (await settledCount(world)) >= 20, 60_000, 20);
      const exit = await stopWorker(worker);
      expect(exit, worker.output().slice(-2_000)).toEqual({ code: 0, signal: null });
      expect(worker.output()).not.toContain("SHUTDOWN_TIMEOUT");
      // Finished, not abandoned: no job still holds a worker's lock, and work remains for the next start.
      expect(await queue.getActiveCount()).toBe(0);
      expect(await applyQueue.getActiveCount()).toBe(0);
      expect(await settledCount(world)).toBeLessThan(s.ids.size);
    } finally {
      if (worker) await stopWorker(worker);
      await Promise.all([queue.close(), applyQueue.close()]);
      await world.cleanup();
    }
  }, 90_000);
});
