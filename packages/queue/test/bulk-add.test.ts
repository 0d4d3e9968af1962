import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { Queue } from "bullmq";
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
import { eventNamesOf, processedJobs, queueState, statesAfterAdding, storedJob } from "./support/stored-jobs.ts";

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

describe("createBulkAdder (real Redis)", () => {
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

  it.each([
    ["the apply queue's options", (p: string) => createQueue(QueueName.Apply, redis, p)],
    [
      "LIFO options",
      (p: string) => new Queue(QueueName.Apply, { connection: redis, prefix: p, defaultJobOptions: { lifo: true } }),
    ],
  ])(
    "leaves Redis exactly as queue.add does with %s: jobs, id counter, wait list, marker, events (new and existing ids)",
    async (_, open) => {
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      const first = [
        { name: "one", id: a, data: payload(a) },
        { name: "two", id: b, data: { other: "payload" } },
      ];
      const second = [
        { name: "two-again", id: b, data: payload(b) },
        { name: "three", id: c, data: payload(c) },
      ];
      const states = await statesAfterAdding(
        redis,
        QueueName.Apply,
        open,
        async (bullmqQueue) => {
          for (const entry of [...first, ...second]) await bullmqQueue.add(entry.name, entry.data, { jobId: entry.id });
        },
        async (adderQueue) => {
          const bulk = createBulkAdder(adderQueue, redis);
          await bulk.add(first, Date.now());
          await bulk.add(second, Date.now());
        },
      );
      expect(Object.keys(states.bullmq)).toEqual(
        expect.arrayContaining(["events", "id", "marker", "meta", "wait", a, b, c]),
      );
      expect(states.adder).toEqual(states.bullmq);
    },
  );

  it("refuses a queue whose default options make BullMQ add jobs with another script (a delay), writing nothing", async () => {
    const delayedPrefix = testQueuePrefix("queue-bulk-delayed");
    const delayed = new Queue(QueueName.Apply, {
      connection: redis,
      prefix: delayedPrefix,
      defaultJobOptions: { delay: 5_000 },
    });
    const id = randomUUID();
    try {
      await delayed.waitUntilReady();
      await expect(
        createBulkAdder(delayed, redis).add([{ name: APPLY_JOB_NAME, id, data: payload(id) }], Date.now()),
      ).rejects.toThrow(/through addDelayedJob, which the batch add does not write/);
      // Only the queue's own meta hash (the Queue writes it): no job, list, counter or event.
      const state = await queueState(redis, `${delayedPrefix}:${QueueName.Apply}`);
      expect(Object.keys(state).filter((key) => key !== "meta")).toEqual([]);
    } finally {
      await delayed.close();
      await deletePrefix(delayedPrefix);
    }
  });

  it("adds a batch in one call, keeps each job's name, leaves a job whose id exists as it is, and counts only the added", async () => {
    const existing = randomUUID();
    await queue.add("existing-name", { original: true }, { jobId: existing });
    const fresh = Array.from({ length: 200 }, () => randomUUID());
    const entries = [...fresh.slice(0, 100), existing, ...fresh.slice(100)].map((id, i) => ({
      name: i % 2 === 0 ? "even" : "odd",
      id,
      data: payload(id),
    }));
    // The answer is the jobs added: the existing one is not (the worker counts published events by it).
    expect(await adder.add(entries, Date.now())).toBe(200);
    expect(await adder.add(entries.slice(99, 102), Date.now())).toBe(0);
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
