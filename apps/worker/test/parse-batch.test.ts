import { randomUUID } from "node:crypto";
import { createDb, type ParsedNotification, upsertParsedNotifications } from "@wpn/db";
import {
  type ApplyJob,
  applyJobSchema,
  createQueue,
  createRedisConnection,
  defaultJobOptions,
  PARSE_JOB_NAME,
  type ParseJob,
  QueueName,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toWorkerError, WorkerError } from "../src/errors.ts";
import { MerchantKeyResolver } from "../src/keys.ts";
import { startWorker } from "../src/worker.ts";
import { handleParse, type ParseDeps } from "../src/workers/parse.processor.ts";
import { applyEnqueuer, ParseBatcher, type ParseBatcherOptions } from "../src/workers/parse-batch.ts";
import { createWorld, quietLog, testContext, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

/** The parse stage's group commit against the real PostgreSQL and Redis (own schema and queue prefix). */
let world: World;
let redis: Redis;
let applyQueue: Queue;
beforeAll(async () => {
  world = await createWorld("wbatch");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
});
afterAll(async () => {
  await applyQueue?.close();
  redis?.disconnect();
  await world.cleanup();
});

/** A batcher on the world's database and apply queue that records every statement's ids and every enqueue. */
function recording(options: Partial<ParseBatcherOptions> = {}) {
  const statements: string[][] = [];
  const enqueues: string[][] = [];
  const enqueue = options.enqueueApply ?? applyEnqueuer(applyQueue, redis);
  const upsert = options.upsert ?? ((rows: ParsedNotification[]) => upsertParsedNotifications(world.prisma, rows));
  const batcher = new ParseBatcher({
    maxBatchSize: 128,
    maxInFlight: 2,
    ...options,
    upsert: (rows) => {
      statements.push(rows.map((r) => r.id));
      return upsert(rows);
    },
    enqueueApply: (jobs) => {
      enqueues.push(jobs.map((j) => j.notificationId));
      return enqueue(jobs);
    },
  });
  const deps: ParseDeps = {
    prisma: world.prisma,
    keys: new MerchantKeyResolver(world.config(), world.prisma),
    commit: (row, apply) => batcher.commit(row, apply),
  };
  return { batcher, deps, statements, enqueues };
}

/** A parsed row as the parse stage builds it, and its apply job when it has one. */
function parsedRow(id: string, status: "PROCESSING" | "IGNORED" = "PROCESSING", body = "{}") {
  const row: ParsedNotification = {
    id,
    apiVersion: "v3",
    wechatId: null,
    otherFormId: null,
    mchid: world.merchant.mchid,
    eventType: "TRANSACTION.SUCCESS",
    receivedAt: Date.now(),
    headers: null,
    body,
    status,
    outTradeNo: `T-${id}`,
    transactionId: null,
    outRefundNo: null,
    subMchid: null,
    errorCode: null,
    lastError: null,
    event: { kind: status === "PROCESSING" ? "PARSED" : "IGNORED", detail: { stage: QueueName.Parse } },
  };
  const apply: ApplyJob | null =
    status === "PROCESSING"
      ? {
          v: 1,
          notificationId: id,
          api: "v3",
          kind: "payment",
          mchid: world.merchant.mchid,
          outTradeNo: `T-${id}`,
          receivedAt: row.receivedAt,
          body,
        }
      : null;
  return { row, apply };
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );

describe("ParseBatcher", () => {
  it("50 concurrent parse jobs share one or two statements and enqueues; each job gets its own outcome", async () => {
    const settled = Array.from({ length: 5 }, () => v3Payment(world, { outTradeNo: `T${randomUUID()}` }));
    const before = recording();
    await Promise.all(settled.map((job) => handleParse(before.deps, job, testContext())));
    await world.prisma.notification.updateMany({
      where: { id: { in: settled.map((j) => j.id) } },
      data: { status: "APPLIED" },
    });
    const paid = Array.from({ length: 40 }, () => v3Payment(world, { outTradeNo: `T${randomUUID()}` }));
    const unpaid = Array.from({ length: 5 }, () =>
      v3Payment(world, { outTradeNo: `T${randomUUID()}`, tradeState: "NOTPAY" }),
    );
    const jobs: ParseJob[] = [...paid, ...unpaid, ...settled].sort(() => Math.random() - 0.5);

    const { deps, statements, enqueues } = recording();
    const results = await Promise.all(jobs.map((job) => handleParse(deps, job, testContext())));

    expect(statements.flat().sort()).toEqual(jobs.map((j) => j.id).sort());
    expect(statements.length).toBeLessThanOrEqual(2);
    expect(enqueues.length).toBeLessThanOrEqual(statements.length);
    const outcomeOf = new Map(jobs.map((job, i) => [job.id, results[i]?.outcome]));
    for (const job of paid) expect(outcomeOf.get(job.id)).toBe("QUEUED");
    for (const job of unpaid) expect(outcomeOf.get(job.id)).toBe("IGNORED");
    for (const job of settled) expect(outcomeOf.get(job.id)).toBe("ALREADY");

    // Only the QUEUED ones were enqueued, under their notification ids, with the apply queue's job options.
    expect(enqueues.flat().sort()).toEqual(paid.map((j) => j.id).sort());
    for (const job of paid) {
      const added = await applyQueue.getJob(job.id);
      expect(applyJobSchema.parse(added?.data)).toMatchObject({ notificationId: job.id, kind: "payment" });
      expect(added?.opts).toMatchObject({
        attempts: defaultJobOptions[QueueName.Apply].attempts,
        backoff: defaultJobOptions[QueueName.Apply].backoff,
      });
    }
    // (The settled ones have the apply jobs of their first parse, from before they were settled.)
    for (const job of unpaid) expect(await applyQueue.getJob(job.id)).toBeUndefined();
    expect(
      await world.prisma.notification.count({ where: { id: { in: paid.map((j) => j.id) }, status: "PROCESSING" } }),
    ).toBe(paid.length);
  });

  it("a failed statement fails every commit of its batch with that error, retryable; nothing is written", async () => {
    const closed = createDb({ url: world.db.url, poolMax: 1 });
    await closed.close();
    const { batcher, enqueues } = recording({ upsert: (rows) => upsertParsedNotifications(closed.prisma, rows) });
    const rows = Array.from({ length: 10 }, (_, i) =>
      parsedRow(`stmt-fail-${i}`, i % 3 === 0 ? "IGNORED" : "PROCESSING"),
    );
    const errors = await Promise.all(rows.map(({ row, apply }) => rejection(batcher.commit(row, apply))));
    for (const error of errors) expect(error).toBe(errors[0]);
    expect(toWorkerError(errors[0])).toMatchObject({ code: "DB_UNAVAILABLE", policy: "retry" });
    expect(enqueues).toEqual([]);
    expect(await world.prisma.notification.count({ where: { id: { startsWith: "stmt-fail-" } } })).toBe(0);
  });

  it("a failed enqueue fails every commit of its batch, IGNORED ones included, as QUEUE_UNAVAILABLE; the retry completes them", async () => {
    const offline = createRedisConnection(TEST_REDIS_URL, "producer");
    offline.on("error", () => undefined);
    const offlineQueue = createQueue(QueueName.Apply, offline, world.prefix);
    await offlineQueue.waitUntilReady();
    offline.disconnect();
    const rows = Array.from({ length: 6 }, (_, i) => parsedRow(`enq-fail-${i}`, i < 2 ? "IGNORED" : "PROCESSING"));
    try {
      const { batcher, statements } = recording({ enqueueApply: applyEnqueuer(offlineQueue, offline) });
      const errors = await Promise.all(rows.map(({ row, apply }) => rejection(batcher.commit(row, apply))));
      for (const error of errors) expect(error).toBe(errors[0]);
      expect(errors[0]).toBeInstanceOf(WorkerError);
      expect(errors[0]).toMatchObject({ code: "QUEUE_UNAVAILABLE", policy: "retry" });
      expect(statements).toHaveLength(1);
    } finally {
      await offlineQueue.close();
    }

    // BullMQ runs them again: the upsert is idempotent, the apply jobs are added this time.
    const retry = recording();
    const results = await Promise.all(rows.map(({ row, apply }) => retry.batcher.commit(row, apply)));
    expect(results.map((r) => r.status)).toEqual(rows.map(({ row }) => row.status));
    expect(results.every((r) => !r.inserted)).toBe(true);
    expect(retry.enqueues.flat().sort()).toEqual(rows.slice(2).map(({ row }) => row.id));
    for (const { row } of rows.slice(2)) expect(await applyQueue.getJob(row.id)).toBeDefined();
  });

  it("a row PostgreSQL refuses fails alone (permanent error): the rest of its batch is recorded row by row", async () => {
    const rows = Array.from({ length: 5 }, (_, i) =>
      parsedRow(`poison-${i}`, "PROCESSING", i === 2 ? "a\u0000b" : "{}"),
    );
    const { batcher, statements } = recording();
    const settled = await Promise.allSettled(rows.map(({ row, apply }) => batcher.commit(row, apply)));
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
    const failed = settled[2];
    expect(failed?.status === "rejected" && toWorkerError(failed.reason)).toMatchObject({
      code: "DB_DATA",
      policy: "stop",
    });
    expect(statements[0]).toHaveLength(5);
    expect(statements.slice(1)).toEqual(rows.map(({ row }) => [row.id]));
    expect(await world.prisma.notification.count({ where: { id: { startsWith: "poison-" } } })).toBe(4);
  });

  it("one notification id twice never shares a batch; both commits complete, one of them inserting", async () => {
    const { batcher, statements } = recording();
    const a = parsedRow("twice-a");
    const b = parsedRow("twice-b");
    const again = parsedRow("twice-a");
    const results = await Promise.all([a, b, again].map(({ row, apply }) => batcher.commit(row, apply)));
    for (const ids of statements) expect(new Set(ids).size).toBe(ids.length);
    expect(statements.flat().sort()).toEqual(["twice-a", "twice-a", "twice-b"]);
    expect(results.map((r) => r.status)).toEqual(["PROCESSING", "PROCESSING", "PROCESSING"]);
    expect([results[0]?.inserted, results[2]?.inserted].sort()).toEqual([false, true]);
    const events = await world.prisma.notificationEvent.findMany({ where: { notificationId: "twice-a" } });
    expect(events.map((e) => e.kind).sort()).toEqual(["PARSED", "RECEIVED"]);
  });

  it("both id forms of one notification in one batch: the first is applied, the other is DUPLICATE of it — one apply job", async () => {
    const { batcher, statements, enqueues } = recording();
    const envelope = `EV-forms-${randomUUID()}`;
    const current = `v3:${world.merchant.mchid}:${envelope}`;
    const legacy = parsedRow(envelope);
    legacy.row.otherFormId = current;
    const resend = parsedRow(current);
    resend.row.otherFormId = envelope;
    const results = await Promise.all([legacy, resend].map(({ row, apply }) => batcher.commit(row, apply)));
    expect(statements).toEqual([[envelope, current]]);
    // Before, neither row saw the other (the statement's snapshot): both PROCESSING, both applied.
    expect(results).toEqual([
      { status: "PROCESSING", inserted: true },
      { status: "DUPLICATE", inserted: true, duplicateOf: envelope },
    ]);
    expect(enqueues).toEqual([[envelope]]);
  });

  it("keeps at most maxInFlight batches of at most maxBatchSize; commits arriving meanwhile form the next batch", async () => {
    let active = 0;
    let maxActive = 0;
    const { batcher, statements } = recording({
      maxBatchSize: 4,
      maxInFlight: 2,
      upsert: async (rows) => {
        active += 1;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 30));
        try {
          return await upsertParsedNotifications(world.prisma, rows);
        } finally {
          active -= 1;
        }
      },
    });
    const burst = Array.from({ length: 18 }, (_, i) => parsedRow(`flow-${String(i).padStart(2, "0")}`));
    await Promise.all(burst.map(({ row, apply }) => batcher.commit(row, apply)));
    expect(statements.map((ids) => ids.length)).toEqual([4, 4, 4, 4, 2]);
    expect(maxActive).toBe(2);

    // One commit per turn of the event loop while two batches are in flight: they gather into few batches.
    statements.length = 0;
    const trickle: Promise<unknown>[] = [];
    for (let i = 0; i < 12; i++) {
      const { row, apply } = parsedRow(`trickle-${i}`);
      trickle.push(batcher.commit(row, apply));
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(trickle);
    expect(statements.length).toBeLessThan(12);
    expect(maxActive).toBe(2);
  });
});

describe("the worker's parse stage", () => {
  it("records 60 parse jobs taken by one worker process in far fewer statements", async () => {
    const worker = await startWorker(world.config({ WORKER_PARSE_CONCURRENCY: "60" }), {
      logger: quietLog,
      healthPort: 0,
    });
    const parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
    try {
      const jobs = Array.from({ length: 60 }, () =>
        v3Payment(world, { outTradeNo: `T${randomUUID()}`, tradeState: "NOTPAY" }),
      );
      await parseQueue.addBulk(jobs.map((job) => ({ name: PARSE_JOB_NAME, data: job, opts: { jobId: job.id } })));
      await waitFor(
        "60 parse jobs completed",
        async () => ((await parseQueue.getJobCounts("completed")).completed ?? 0) >= 60,
      );
      const histogram = await worker.metrics.parseBatchSize.get();
      const value = (name: string) => histogram.values.find((v) => v.metricName === name)?.value;
      expect(value("wpn_worker_parse_batch_size_sum")).toBe(60);
      expect(value("wpn_worker_parse_batch_size_count")).toBeLessThanOrEqual(20);
      const outcomes = await worker.metrics.outcomes.get();
      expect(outcomes.values.find((v) => v.labels.outcome === "IGNORED")?.value).toBe(60);
    } finally {
      await parseQueue.close();
      await worker.close();
    }
  });
});
