import { randomUUID } from "node:crypto";
import { createDb, type PaymentFacts, type PaymentResult } from "@wpn/db";
import { type ApplyJob, createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../src/domain/apply-payment.ts";
import { prismaApplyStore } from "../src/domain/store.ts";
import { toWorkerError, WorkerError } from "../src/errors.ts";
import { MerchantKeyResolver } from "../src/keys.ts";
import { startWorker } from "../src/worker.ts";
import { type ApplyDeps, handleApply } from "../src/workers/apply.processor.ts";
import { PaymentBatcher, type PaymentBatcherOptions } from "../src/workers/apply-batch.ts";
import { GroupCommit } from "../src/workers/group-commit.ts";
import {
  createWorld,
  inline,
  orderOf,
  quietLog,
  seedOrder,
  seedSkus,
  stockOf,
  testContext,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

/** The apply stage's group commit of payments against the real PostgreSQL and Redis (own schema and prefix). */
let world: World;
let redis: Redis;
beforeAll(async () => {
  world = await createWorld("wapplyb");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  await seedSkus(world.prisma, { P: 100_000, Q: 1, R: 100_000 });
});
afterAll(async () => {
  redis?.disconnect();
  await world.cleanup();
});

/**
 * Apply deps whose payments go through a PaymentBatcher over the world's store (or `options.payments`), with
 * the notification ids of every statement recorded.
 */
function recording(options: Partial<PaymentBatcherOptions> = {}) {
  const store = prismaApplyStore(world.prisma);
  const payments = options.payments ?? store.payments;
  const statements: string[][] = [];
  const batcher = new PaymentBatcher({
    maxBatchSize: 64,
    maxInFlight: 2,
    ...options,
    payments: (facts) => {
      statements.push(facts.map((f) => f.notificationId));
      return payments(facts);
    },
  });
  const deps: ApplyDeps = {
    payment: (facts) => batcher.apply(facts),
    refund: (facts) => store.refund(facts),
    keys: new MerchantKeyResolver(world.config(), world.prisma),
    restockOnFullRefund: true,
  };
  return { batcher, deps, statements };
}

/** Parses payment notifications for seeded orders (as the parse stage does) and returns their apply jobs. */
async function applyJobsFor(specs: Parameters<typeof v3Payment>[1][]): Promise<ApplyJob[]> {
  const run = inline(world);
  return Promise.all(
    specs.map(async (spec) => {
      const { applyJob } = await run.parse(v3Payment(world, spec));
      if (!applyJob) throw new Error(`no apply job for ${spec.outTradeNo}`);
      return applyJob;
    }),
  );
}

/** Payment facts as the apply stage builds them, for a PROCESSING notification row created here. */
async function factsFor(outTradeNos: string[], prefix: string): Promise<PaymentFacts[]> {
  const facts = outTradeNos.map((outTradeNo, i) => ({
    notificationId: `${prefix}-${i}`,
    outTradeNo,
    transactionId: `42${randomUUID().replaceAll("-", "").slice(0, 18)}`,
    mchid: world.merchant.mchid,
    appid: world.merchant.appid,
    subMchid: null,
    subAppid: null,
    total: 100,
    currency: "CNY",
    payerOpenid: "oPayer",
    payerSpOpenid: null,
    paidAt: Date.now(),
  }));
  await world.prisma.notification.createMany({
    data: facts.map((f) => ({
      id: f.notificationId,
      eventType: "TRANSACTION.SUCCESS",
      receivedAt: new Date(),
      body: "{}",
      status: "PROCESSING" as const,
    })),
  });
  return facts;
}

const settle = <T>(promises: Promise<T>[]) => Promise.allSettled(promises);
const reasonOf = (result: PromiseSettledResult<unknown> | undefined) =>
  result?.status === "rejected" ? result.reason : undefined;

describe("PaymentBatcher", () => {
  it("50 concurrent apply jobs share one or two statements; each job gets its own outcome", async () => {
    const before = await stockOf(world.prisma);
    const paid = await Promise.all(
      Array.from({ length: 41 }, () => seedOrder(world, { amountTotal: 100, items: { P: 1, R: 2 } })),
    );
    const mismatched = await Promise.all(
      Array.from({ length: 3 }, () => seedOrder(world, { amountTotal: 100, items: { P: 1 } })),
    );
    const scarce = await seedOrder(world, { amountTotal: 100, items: { P: 1, Q: 2 } });
    // Paid before the burst: a notification of the same transaction under another id is DUPLICATE.
    const settled = await seedOrder(world, { amountTotal: 100, items: { P: 1 } });
    await inline(world).deliver(v3Payment(world, { outTradeNo: settled, transactionId: "4200000900" }));
    // Two notifications (two ids) of one transaction in the same burst: one APPLIED, the other DUPLICATE.
    const twice = await seedOrder(world, { amountTotal: 100, items: { R: 1 } });

    const jobs = await applyJobsFor([
      ...paid.map((outTradeNo) => ({ outTradeNo })),
      ...mismatched.map((outTradeNo) => ({ outTradeNo, total: 99 })),
      { outTradeNo: scarce },
      { outTradeNo: settled, transactionId: "4200000900" },
      { outTradeNo: twice, transactionId: "4200000901" },
      { outTradeNo: twice, transactionId: "4200000901" },
      { outTradeNo: `T-nowhere-${randomUUID()}` },
    ]);
    // The same apply job twice (BullMQ re-ran it while the first run was still going): one of them is ALREADY.
    const rerun = jobs[0] as ApplyJob;
    const burst = [...jobs, rerun];
    expect(burst).toHaveLength(50);

    const { deps, statements } = recording();
    const results = await settle(burst.map((job) => handleApply(deps, job, testContext())));

    expect(statements.length).toBeGreaterThanOrEqual(1);
    expect(statements.length).toBeLessThanOrEqual(2);
    expect(statements.flat().sort()).toEqual(burst.map((j) => j.notificationId).sort());
    const outcomes = results.map((r) => (r.status === "fulfilled" ? r.value.outcome : null));
    // In burst order: 41 paid, 3 mismatched, scarce, settled, twice × 2, nowhere, the re-run of the first.
    expect(outcomes.slice(1, 41)).toEqual(Array(40).fill("APPLIED"));
    expect([outcomes[0], outcomes[49]].sort()).toEqual(["ALREADY", "APPLIED"]);
    expect(outcomes.slice(41, 44)).toEqual(["AMOUNT_MISMATCH", "AMOUNT_MISMATCH", "AMOUNT_MISMATCH"]);
    expect(outcomes[44]).toBe("OUT_OF_STOCK");
    expect(outcomes[45]).toBe("DUPLICATE");
    expect([outcomes[46], outcomes[47]].sort()).toEqual(["APPLIED", "DUPLICATE"]);
    // An order the checkout has not committed yet: that job alone throws, retryable within the window.
    expect(reasonOf(results[48])).toMatchObject({ code: "ORDER_NOT_FOUND", policy: "window" });

    for (const otn of paid) expect((await orderOf(world.prisma, otn)).status).toBe("SUCCESS");
    for (const otn of mismatched) {
      expect(await orderOf(world.prisma, otn)).toMatchObject({
        status: "PAYMENT_REVIEW",
        reviewReason: "AMOUNT_MISMATCH",
      });
    }
    expect(await orderOf(world.prisma, scarce)).toMatchObject({ status: "PAYMENT_REVIEW", movements: [] });
    const after = await stockOf(world.prisma);
    // `settled` took its P before the burst, after `before` was read.
    expect(after.P).toBe((before.P ?? 0) - 42);
    expect(after.R).toBe((before.R ?? 0) - 83);
    expect(after.Q).toBe(before.Q);
  });

  it("a failed statement fails every job of its batch, retryable, and applies nothing; the retry applies them", async () => {
    const orders = await Promise.all(Array.from({ length: 6 }, () => seedOrder(world, { items: { P: 1 } })));
    const jobs = await applyJobsFor(orders.map((outTradeNo) => ({ outTradeNo })));
    const closed = createDb({ url: world.db.url, poolMax: 1 });
    await closed.close();
    const failing = recording({ payments: prismaApplyStore(closed.prisma).payments });
    const results = await settle(jobs.map((job) => handleApply(failing.deps, job, testContext())));
    expect(failing.statements).toHaveLength(1);
    const errors = results.map(reasonOf);
    for (const error of errors) expect(error).toBe(errors[0]);
    expect(toWorkerError(errors[0])).toMatchObject({ code: "DB_UNAVAILABLE", policy: "retry" });
    for (const otn of orders) expect((await orderOf(world.prisma, otn)).status).toBe("NOTPAY");

    // BullMQ runs the jobs again.
    const retry = recording();
    const outcomes = await Promise.all(jobs.map((job) => handleApply(retry.deps, job, testContext())));
    expect(outcomes.map((r) => r.outcome)).toEqual(Array(6).fill("APPLIED"));
    expect(retry.statements).toHaveLength(1);
  });

  it("a batch is one transaction: a payment PostgreSQL refuses undoes the batch, which is applied again one payment at a time", async () => {
    const orders = await Promise.all(Array.from({ length: 5 }, () => seedOrder(world, { items: { P: 1 } })));
    const facts = await factsFor(orders, `poison-${randomUUID()}`);
    // Beyond the integer column of the function's input: SQLSTATE 22003, a data exception.
    const poisoned = facts.map((f, i) => (i === 2 ? { ...f, total: 3_000_000_000 } : f));
    const { batcher, statements } = recording();
    const results = await settle(poisoned.map((f) => batcher.apply(f)));

    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect(toWorkerError(reasonOf(results[2]))).toMatchObject({ code: "DB_DATA", policy: "stop" });
    // Not ALREADY: the failed batch statement committed nothing, the singles applied them.
    for (const i of [0, 1, 3, 4]) {
      const result = results[i];
      expect(result?.status === "fulfilled" && result.value.outcome).toBe("APPLIED");
    }
    expect(statements[0]).toHaveLength(5);
    expect(statements.slice(1)).toEqual(facts.map((f) => [f.notificationId]));
    expect((await orderOf(world.prisma, orders[2] as string)).status).toBe("NOTPAY");
  });

  it("a STALE answer runs the payment again in a later batch; a payment STALE every time is ORDER_CONTENDED", async () => {
    const orders = await Promise.all(Array.from({ length: 4 }, () => seedOrder(world, { items: { P: 1 } })));
    const facts = await factsFor(orders, `stale-${randomUUID()}`);
    const [once, always] = facts as [PaymentFacts, PaymentFacts];
    const stale: PaymentResult = {
      outcome: "STALE",
      orderId: null,
      orderStatus: null,
      reviewReason: null,
      amountTotal: null,
      moved: 0,
      notificationStatus: "PROCESSING",
      notificationCode: null,
      appliedAt: null,
    };
    const store = prismaApplyStore(world.prisma);
    const attempts = new Map<string, number>();
    // STALE for `once` on its first attempt and for `always` on every one, without applying them (as the
    // statement answers STALE: nothing done); the batch's other payments are applied.
    const { batcher, statements } = recording({
      payments: async (batch) => {
        const isStale = batch.map((f) => {
          const attempt = (attempts.get(f.notificationId) ?? 0) + 1;
          attempts.set(f.notificationId, attempt);
          return (
            f.notificationId === always.notificationId || (f.notificationId === once.notificationId && attempt === 1)
          );
        });
        const applied = await store.payments(batch.filter((_, i) => !isStale[i]));
        return batch.map((_, i) => (isStale[i] ? stale : (applied.shift() as PaymentResult)));
      },
    });
    const results = await settle(facts.map((f) => applyPayment((p) => batcher.apply(p), f)));

    expect(results.map((r) => (r.status === "fulfilled" ? r.value.outcome : null))).toEqual([
      "APPLIED",
      null,
      "APPLIED",
      "APPLIED",
    ]);
    expect(reasonOf(results[1])).toBeInstanceOf(WorkerError);
    expect(reasonOf(results[1])).toMatchObject({ code: "ORDER_CONTENDED", policy: "retry" });
    expect(attempts.get(once.notificationId)).toBe(2);
    expect(attempts.get(always.notificationId)).toBe(5);
    // Every run again went to a later batch: the first one held all four.
    expect(statements[0]).toHaveLength(4);
    expect(statements.length).toBe(5);
    expect((await orderOf(world.prisma, always.outTradeNo)).status).toBe("NOTPAY");
    expect((await orderOf(world.prisma, once.outTradeNo)).status).toBe("SUCCESS");
  });

  it("keeps at most maxInFlight batches of at most maxBatchSize", async () => {
    let active = 0;
    let maxActive = 0;
    const sizes: number[] = [];
    const batches = new GroupCommit<number, number>({
      maxBatchSize: 64,
      maxInFlight: 2,
      commit: async (items) => {
        sizes.push(items.length);
        active += 1;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 10));
        active -= 1;
        return items.map((n) => n * 2);
      },
    });
    const results = await Promise.all(Array.from({ length: 150 }, (_, i) => batches.submit(i)));
    expect(results).toEqual(Array.from({ length: 150 }, (_, i) => i * 2));
    expect(sizes).toEqual([64, 64, 22]);
    expect(maxActive).toBe(2);
  });

  it("an answer with fewer results than payments fails the batch as INTERNAL (retried)", async () => {
    const { batcher } = recording({
      payments: async (batch) => (await prismaApplyStore(world.prisma).payments(batch)).slice(1),
    });
    const orders = await Promise.all(Array.from({ length: 2 }, () => seedOrder(world, { items: { P: 1 } })));
    const facts = await factsFor(orders, `short-${randomUUID()}`);
    const results = await settle(facts.map((f) => batcher.apply(f)));
    for (const result of results) expect(reasonOf(result)).toMatchObject({ code: "INTERNAL", policy: "retry" });
  });
});

describe("the worker's apply stage", () => {
  it("applies 60 payment jobs of one process in far fewer statements with a pool of 4; refunds still run alone", async () => {
    const worker = await startWorker(world.config({ WORKER_CONCURRENCY: "60", PG_POOL_MAX: "4" }), {
      logger: quietLog,
      healthPort: 0,
    });
    const parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
    const applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
    try {
      const orders = await Promise.all(
        Array.from({ length: 60 }, () => seedOrder(world, { amountTotal: 300, items: { P: 1, R: 1 } })),
      );
      const payments = orders.map((outTradeNo) => v3Payment(world, { outTradeNo, total: 300 }));
      await parseQueue.addBulk(payments.map((job) => ({ name: PARSE_JOB_NAME, data: job, opts: { jobId: job.id } })));
      await waitFor(
        "60 apply jobs completed",
        async () => ((await applyQueue.getJobCounts("completed")).completed ?? 0) >= 60,
      );
      const histogram = await worker.metrics.applyBatchSize.get();
      const value = (name: string) => histogram.values.find((v) => v.metricName === name)?.value;
      expect(value("wpn_worker_apply_batch_size_sum")).toBe(60);
      expect(value("wpn_worker_apply_batch_size_count")).toBeLessThanOrEqual(20);
      for (const otn of orders) expect((await orderOf(world.prisma, otn)).status).toBe("SUCCESS");

      // 20 refunds at once: more jobs than pooled connections, each waits its turn in the pool.
      const refunded = orders.slice(0, 20);
      const refunds = await Promise.all(
        refunded.map(async (outTradeNo) => {
          const order = await orderOf(world.prisma, outTradeNo);
          return v3Refund(world, { outTradeNo, transactionId: order.transactionId ?? "", refund: 300, total: 300 });
        }),
      );
      await parseQueue.addBulk(refunds.map((job) => ({ name: PARSE_JOB_NAME, data: job, opts: { jobId: job.id } })));
      await waitFor(
        "80 apply jobs completed",
        async () => ((await applyQueue.getJobCounts("completed")).completed ?? 0) >= 80,
      );
      for (const otn of refunded) expect((await orderOf(world.prisma, otn)).status).toBe("REFUND");
      expect(value("wpn_worker_apply_batch_size_sum")).toBe(60);
      expect(await applyQueue.getJobCounts("failed")).toMatchObject({ failed: 0 });
      expect((await worker.metrics.errors.get()).values).toEqual([]);
    } finally {
      await parseQueue.close();
      await applyQueue.close();
      await worker.close();
    }
  });

  it("a failed batch statement fails its jobs; BullMQ retries them and they are applied", async () => {
    let failures = 1;
    const worker = await startWorker(world.config({ WORKER_CONCURRENCY: "32" }), {
      logger: quietLog,
      healthPort: 0,
      applyStore: (db) => {
        const store = prismaApplyStore(db.prisma);
        return {
          ...store,
          payments: async (facts) => {
            if (failures > 0) {
              failures -= 1;
              // What node-postgres rejects with on a deadlock: SQLSTATE 40P01, transient.
              throw Object.assign(new Error("deadlock detected"), { code: "40P01" });
            }
            return store.payments(facts);
          },
        };
      },
    });
    const parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
    try {
      const orders = await Promise.all(Array.from({ length: 8 }, () => seedOrder(world, { items: { P: 1 } })));
      const jobs = orders.map((outTradeNo) => v3Payment(world, { outTradeNo }));
      await parseQueue.addBulk(jobs.map((job) => ({ name: PARSE_JOB_NAME, data: job, opts: { jobId: job.id } })));
      await waitFor("8 orders paid", async () => {
        const paid = await world.prisma.order.count({ where: { outTradeNo: { in: orders }, status: "SUCCESS" } });
        return paid === 8;
      });
      const errors = await worker.metrics.errors.get();
      const conflicts = errors.values.find(
        (v) => v.labels.queue === QueueName.Apply && v.labels.code === "DB_CONFLICT",
      );
      // Every job of the failed batch (the first one; it may not have held all eight) was retried.
      expect(conflicts?.value).toBeGreaterThanOrEqual(1);
      const events = await world.prisma.notificationEvent.findMany({
        where: { notificationId: { in: jobs.map((j) => j.id) }, kind: "FAILED" },
      });
      expect(events).toHaveLength(conflicts?.value ?? 0);
      for (const otn of orders) expect((await orderOf(world.prisma, otn)).movements).toHaveLength(1);
    } finally {
      await parseQueue.close();
      await worker.close();
    }
  });
});
