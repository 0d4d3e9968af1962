import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  APPLY_JOB_NAME,
  type BulkAdder,
  createBulkAdder,
  createQueue,
  createRedisConnection,
  QueueName,
} from "../src/index.ts";
import { eventNamesOf, processedJobs, storedJob } from "./support/stored-jobs.ts";

const prefix = testQueuePrefix("queue-bulk-add");
let redis: Redis;
let queue: Queue;
let adder: BulkAdder;

beforeAll(async () => {
  redis = createRedisConnection(TEST_REDIS_URL, "worker");
  await once(redis, "ready");
  queue = createQueue(QueueName.Apply, redis, prefix);
  adder = createBulkAdder(queue, redis);
});
afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await deletePrefix(prefix);
});

const payload = (id: string) => ({ v: 1, notificationId: id, body: '{"x":"数据"}', nested: { n: 1 } });
const queueKey = `${prefix}:${QueueName.Apply}`;
const key = (name: string) => `${queueKey}:${name}`;
const jobHash = (id: string) => storedJob(redis, queueKey, id);
const eventsOf = (id: string) => eventNamesOf(redis, queueKey, id);

describe("createBulkAdder (real Redis, BullMQ's own add script)", () => {
  it("writes the same job as queue.add: hash fields, options, wait list and events", async () => {
    const viaBullmq = randomUUID();
    const viaAdder = randomUUID();
    await queue.add(APPLY_JOB_NAME, payload("same"), { jobId: viaBullmq });
    await adder.add([{ name: APPLY_JOB_NAME, id: viaAdder, data: payload("same") }], Date.now());
    const expected = await jobHash(viaBullmq);
    expect(await jobHash(viaAdder)).toEqual(expected);
    // The apply queue's defaults reached the stored options (attempts, retention).
    expect(expected.opts).toMatchObject({ attempts: 20, removeOnComplete: { age: 3_600, count: 10_000 } });
    expect(await redis.lrange(key("wait"), 0, -1)).toEqual(expect.arrayContaining([viaBullmq, viaAdder]));
    expect(await eventsOf(viaAdder)).toEqual(await eventsOf(viaBullmq));
  });

  it("adds a batch in one call, keeps each job's name, and leaves a job whose id exists as it is", async () => {
    const existing = randomUUID();
    await queue.add("existing-name", { original: true }, { jobId: existing });
    const fresh = Array.from({ length: 200 }, () => randomUUID());
    const entries = [...fresh.slice(0, 100), existing, ...fresh.slice(100)].map((id, i) => ({
      name: i % 2 === 0 ? "even" : "odd",
      id,
      data: payload(id),
    }));
    await adder.add(entries, Date.now());
    for (const [i, id] of [...fresh.slice(0, 100), existing, ...fresh.slice(100)].entries()) {
      const job = await queue.getJob(id);
      if (id === existing) {
        expect(job?.name).toBe("existing-name");
        expect(job?.data).toEqual({ original: true });
      } else {
        expect(job?.name).toBe(i % 2 === 0 ? "even" : "odd");
        expect(job?.data).toEqual(payload(id));
      }
    }
    expect((await eventsOf(existing)).filter((e) => e === "added")).toHaveLength(1);
  });

  it("rejects when Redis is unreachable (the caller retries; the ids make that harmless)", async () => {
    const offline = createRedisConnection(TEST_REDIS_URL, "producer");
    offline.on("error", () => undefined);
    const offlineQueue = createQueue(QueueName.Apply, offline, prefix);
    await offlineQueue.waitUntilReady();
    offline.disconnect();
    const id = randomUUID();
    try {
      await expect(
        createBulkAdder(offlineQueue, offline).add([{ name: APPLY_JOB_NAME, id, data: payload(id) }], Date.now()),
      ).rejects.toThrow();
      expect(await queue.getJob(id)).toBeUndefined();
    } finally {
      await offlineQueue.close();
    }
  });

  it("hands its jobs to a real BullMQ Worker with data and options intact", async () => {
    const workerPrefix = testQueuePrefix("queue-bulk-worker");
    const workerQueue = createQueue(QueueName.Apply, redis, workerPrefix);
    const ids = Array.from({ length: 20 }, () => randomUUID());
    const processed = processedJobs(QueueName.Apply, workerPrefix, ids.length);
    try {
      await createBulkAdder(workerQueue, redis).add(
        ids.map((id) => ({ name: APPLY_JOB_NAME, id, data: payload(id) })),
        Date.now(),
      );
      const seen = await processed;
      expect(seen.map((j) => j.id).sort()).toEqual([...ids].sort());
      for (const job of seen) {
        expect(job.name).toBe(APPLY_JOB_NAME);
        expect(job.data).toEqual(payload(job.id ?? ""));
        expect(job.opts.attempts).toBe(20);
      }
    } finally {
      await workerQueue.close();
      await deletePrefix(workerPrefix);
    }
  });
});
