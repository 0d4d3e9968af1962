import { randomUUID } from "node:crypto";
import { once } from "node:events";
import {
  createQueue,
  createReceiptedAdder,
  createRedisConnection,
  PARSE_JOB_NAME,
  type ParseJobV3,
  QueueName,
  readReceipt,
} from "@wpn/queue";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BatcherOptions, EnqueueBatcher } from "../src/enqueue/batcher.ts";
import { createMetrics } from "../src/metrics.ts";

const prefix = testQueuePrefix("ingress-batcher");
let redis: Redis;
let queue: Queue;

beforeAll(async () => {
  redis = createRedisConnection(TEST_REDIS_URL, "producer");
  await once(redis, "ready");
  queue = createQueue(QueueName.Parse, redis, prefix);
});
afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await deletePrefix(prefix);
});

/** A connection a queue sample vouched for and that has not closed since. */
const VOUCHED = { unkeptBecause: undefined, connectionCloses: 0 };

function batcher(options: { maxBatchSize?: number; maxInFlight?: number; vouching?: BatcherOptions["vouching"] } = {}) {
  const metrics = createMetrics({ defaultMetrics: false });
  const b = new EnqueueBatcher({
    adder: createReceiptedAdder(queue, redis, PARSE_JOB_NAME, { prefix, ttlSeconds: 3_600 }),
    maxBatchSize: options.maxBatchSize ?? 256,
    maxInFlight: options.maxInFlight ?? 2,
    clock: Date.now,
    metrics,
    vouching: options.vouching ?? VOUCHED,
  });
  return { b, metrics };
}

const job = (id: string): ParseJobV3 => ({
  v: 1,
  api: "v3",
  id,
  mchid: "1900000109",
  receivedAt: Date.now(),
  headers: { timestamp: "1", nonce: "n", serial: "s", signatureType: "WECHATPAY2-SHA256-RSA2048" },
  body: "{}",
});

async function addedEvents(id: string): Promise<number> {
  const entries = await redis.xrange(`${prefix}:${QueueName.Parse}:events`, "-", "+");
  return entries.filter(([, f]) => f[1] === "added" && f[3] === id).length;
}

describe("EnqueueBatcher (real Redis)", () => {
  it("collapses a duplicate that arrives while the first copy's batch is in flight onto the same BullMQ job", async () => {
    const { b } = batcher({ maxInFlight: 2 });
    const id = randomUUID();
    const first = b.submit(id, job(id));
    // Let the first batch leave (its receipt is not written yet), then deliver the same id again.
    await new Promise((r) => setImmediate(r));
    const second = b.submit(id, job(id));
    expect(await first).toEqual({ kind: "enqueued" });
    // The first batch's script added the job and its receipt atomically: the second copy finds the receipt.
    expect(await second).toEqual({ kind: "duplicate", via: "receipt" });
    await b.drain();
    expect(await addedEvents(id)).toBe(1);
    expect((await readReceipt(redis, prefix, id))?.count).toBe(2);
  });

  it("splits a burst into batches of at most maxBatchSize and confirms every job", async () => {
    const { b, metrics } = batcher({ maxBatchSize: 10, maxInFlight: 1 });
    const ids = Array.from({ length: 35 }, () => randomUUID());
    const outcomes = await Promise.all(ids.map((id) => b.submit(id, job(id))));
    expect(outcomes.every((o) => o.kind === "enqueued")).toBe(true);
    const sizes = await metrics.registry.getSingleMetricAsString("wpn_ingress_enqueue_batch_size");
    expect(sizes).toContain("wpn_ingress_enqueue_batch_size_count 4");
    // 10 + 10 + 10 + 5: one batch at or below 8, all four at or below 16.
    expect(sizes).toContain('wpn_ingress_enqueue_batch_size_bucket{le="8"} 1');
    expect(sizes).toContain('wpn_ingress_enqueue_batch_size_bucket{le="16"} 4');
    expect((await Promise.all(ids.map((id) => queue.getJob(id)))).every(Boolean)).toBe(true);
  });

  it("answers an id whose job is still in Redis (added without a receipt) as a duplicate via the job", async () => {
    const { b } = batcher();
    const id = randomUUID();
    await queue.add(PARSE_JOB_NAME, job(id), { jobId: id });
    expect(await b.submit(id, job(id))).toEqual({ kind: "duplicate", via: "job" });
    expect(await addedEvents(id)).toBe(1);
    expect((await readReceipt(redis, prefix, id))?.count).toBe(1);
  });

  it("does not send a batch when no sample vouches for the connection: QUEUE_UNAVAILABLE, nothing in Redis", async () => {
    const unkeptBecause = "redis reconnected: its eviction policy and role are not sampled yet";
    const { b } = batcher({ vouching: { unkeptBecause, connectionCloses: 1 } });
    const id = randomUUID();
    await expect(b.submit(id, job(id))).rejects.toMatchObject({
      code: "QUEUE_UNAVAILABLE",
      message: `batch of 1 job(s) not sent: ${unkeptBecause}`,
    });
    expect(await queue.getJob(id)).toBeUndefined();
    expect(await readReceipt(redis, prefix, id)).toBeUndefined();
  });

  it("refuses a batch Redis confirmed after the connection closed (answered on the next one): QUEUE_UNAVAILABLE", async () => {
    // The close is counted between the send and the answer (here: between the two reads of the count).
    let reads = 0;
    const { b, metrics } = batcher({
      vouching: {
        unkeptBecause: undefined,
        get connectionCloses() {
          reads += 1;
          return reads > 1 ? 1 : 0;
        },
      },
    });
    const id = randomUUID();
    await expect(b.submit(id, job(id))).rejects.toMatchObject({ code: "QUEUE_UNAVAILABLE" });
    // Redis ran it: the resend, once the server is vouched for, is answered by the receipt.
    expect(await queue.getJob(id)).toBeDefined();
    expect((await readReceipt(redis, prefix, id))?.count).toBe(1);
    const histogram = await metrics.enqueueDuration.get();
    expect(
      histogram.values.find((v) => v.labels.result === "reconnected" && v.metricName?.endsWith("_count"))?.value,
    ).toBe(1);
  });

  it("rejects every job of a failed batch with QUEUE_UNAVAILABLE and writes no receipt", async () => {
    const broken = createRedisConnection("redis://127.0.0.1:1", "producer", { retryStrategy: () => null });
    broken.on("error", () => undefined);
    const brokenQueue = createQueue(QueueName.Parse, broken, prefix);
    brokenQueue.on("error", () => undefined);
    const metrics = createMetrics({ defaultMetrics: false });
    const b = new EnqueueBatcher({
      adder: createReceiptedAdder(brokenQueue, broken, PARSE_JOB_NAME, { prefix, ttlSeconds: 3_600 }),
      maxBatchSize: 256,
      maxInFlight: 2,
      clock: Date.now,
      metrics,
      vouching: VOUCHED,
    });
    const ids = [randomUUID(), randomUUID()];
    const results = await Promise.allSettled(ids.map((id) => b.submit(id, job(id))));
    for (const result of results) {
      expect(result.status).toBe("rejected");
      expect((result as PromiseRejectedResult).reason).toMatchObject({ code: "QUEUE_UNAVAILABLE", status: 503 });
    }
    expect(await readReceipt(redis, prefix, ids[0] ?? "")).toBeUndefined();
    broken.disconnect();
  });
});
