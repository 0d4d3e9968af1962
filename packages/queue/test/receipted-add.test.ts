import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createQueue,
  createReceiptedAdder,
  createRedisConnection,
  PARSE_JOB_NAME,
  QueueName,
  type ReceiptedAdder,
  readReceipt,
  receiptKey,
} from "../src/index.ts";
import { eventNamesOf, processedJobs, statesAfterAdding, storedJob } from "./support/stored-jobs.ts";

const prefix = testQueuePrefix("queue-receipted-add");
const TTL_SECONDS = 3_600;
let redis: Redis;
let queue: Queue;
let adder: ReceiptedAdder;

beforeAll(async () => {
  redis = createRedisConnection(TEST_REDIS_URL, "producer");
  await once(redis, "ready");
  queue = createQueue(QueueName.Parse, redis, prefix);
  adder = createReceiptedAdder(queue, redis, PARSE_JOB_NAME, { prefix, ttlSeconds: TTL_SECONDS });
});
afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await deletePrefix(prefix);
});

const payload = (id: string) => ({ v: 1, id, body: '{"x":"数据"}', nested: { n: 1 } });

const queueKey = `${prefix}:${QueueName.Parse}`;
const jobHash = (id: string) => storedJob(redis, queueKey, id);
const eventsOf = (id: string) => eventNamesOf(redis, queueKey, id);

describe("createReceiptedAdder (real Redis)", () => {
  it("writes the same job as queue.add: hash fields, options, wait list and events", async () => {
    const viaBullmq = randomUUID();
    const viaAdder = randomUUID();
    await queue.add(PARSE_JOB_NAME, { ...payload("same") }, { jobId: viaBullmq });
    expect(await adder.add([{ id: viaAdder, data: payload("same"), deliveries: 1 }], Date.now())).toEqual(["added"]);
    const expected = await jobHash(viaBullmq);
    expect(await jobHash(viaAdder)).toEqual(expected);
    // Queue defaults reached the stored options (attempts, backoff, retention).
    expect(expected.opts).toMatchObject({ attempts: 20, backoff: { type: "exponential", delay: 1_000 } });
    const waiting = await redis.lrange(`${queueKey}:wait`, 0, -1);
    expect(waiting).toEqual(expect.arrayContaining([viaBullmq, viaAdder]));
    expect(await eventsOf(viaAdder)).toEqual(await eventsOf(viaBullmq));
  });

  it.each([
    ["a fresh queue", async () => undefined],
    ["a paused queue", async (q: Queue) => q.pause()],
    [
      "a queue at its global concurrency limit",
      async (q: Queue) => {
        await q.setGlobalConcurrency(1);
        await redis.lpush(`${q.qualifiedName}:active`, "busy-job");
      },
    ],
  ])("leaves %s exactly as queue.add does: jobs, id counter, lists, marker, events", async (_, prepare) => {
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const entry = (id: string) => ({ id, data: payload(id), deliveries: 1 });
    const states = await statesAfterAdding(
      redis,
      QueueName.Parse,
      (p) => createQueue(QueueName.Parse, redis, p),
      async (bullmqQueue) => {
        await prepare(bullmqQueue);
        for (const id of [a, b, b, c]) await bullmqQueue.add(PARSE_JOB_NAME, payload(id), { jobId: id });
      },
      async (adderQueue, adderPrefix) => {
        await prepare(adderQueue);
        const receipted = createReceiptedAdder(adderQueue, redis, PARSE_JOB_NAME, {
          prefix: adderPrefix,
          ttlSeconds: 60,
        });
        expect(await receipted.add([entry(a), entry(b)], Date.now())).toEqual(["added", "added"]);
        // Without its receipt, b's second delivery takes the existing-job path (a `duplicated` event, like queue.add).
        await redis.del(receiptKey(adderPrefix, b));
        expect(await receipted.add([entry(b), entry(c)], Date.now())).toEqual(["job", "added"]);
      },
    );
    expect(Object.keys(states.bullmq)).toEqual(expect.arrayContaining(["events", "id", "meta", "wait", a, b, c]));
    expect(states.adder).toEqual(states.bullmq);
  });

  it("records the receipt with the job, counts later deliveries on it and adds nothing more", async () => {
    const id = randomUUID();
    const t0 = Date.now();
    expect(await adder.add([{ id, data: payload(id), deliveries: 2 }], t0)).toEqual(["added"]);
    expect(await readReceipt(redis, prefix, id)).toEqual({ first: t0, last: t0, count: 2 });
    const ttl = await redis.ttl(receiptKey(prefix, id));
    expect(ttl).toBeGreaterThan(TTL_SECONDS - 5);
    expect(ttl).toBeLessThanOrEqual(TTL_SECONDS);

    // The job completed and was removed: only the receipt remembers the id.
    await queue.remove(id);
    expect(await adder.add([{ id, data: payload(id), deliveries: 1 }], t0 + 5_000)).toEqual(["receipt"]);
    expect(await readReceipt(redis, prefix, id)).toEqual({ first: t0, last: t0 + 5_000, count: 3 });
    expect(await queue.getJob(id)).toBeUndefined();
    expect((await eventsOf(id)).filter((e) => e === "added")).toHaveLength(1);
  });

  it("reports a job still in Redis without a receipt as 'job', and then records the receipt", async () => {
    const id = randomUUID();
    await queue.add(PARSE_JOB_NAME, payload(id), { jobId: id });
    expect(await adder.add([{ id, data: payload(id), deliveries: 1 }], Date.now())).toEqual(["job"]);
    expect((await readReceipt(redis, prefix, id))?.count).toBe(1);
    expect((await eventsOf(id)).filter((e) => e === "added")).toHaveLength(1);
  });

  it("answers a mixed batch in input order", async () => {
    const fresh = Array.from({ length: 300 }, () => randomUUID());
    const seen = randomUUID();
    await adder.add([{ id: seen, data: payload(seen), deliveries: 1 }], Date.now());
    const entries = [...fresh.slice(0, 150), seen, ...fresh.slice(150)].map((id) => ({
      id,
      data: payload(id),
      deliveries: 1,
    }));
    const outcomes = await adder.add(entries, Date.now());
    expect(outcomes).toHaveLength(301);
    expect(outcomes[150]).toBe("receipt");
    expect(outcomes.filter((o) => o === "added")).toHaveLength(300);
    expect(await queue.getJobCountByTypes("wait")).toBeGreaterThanOrEqual(300);
  });

  it("places jobs like queue.add while the queue is paused (same list, no marker for workers)", async () => {
    const pausedPrefix = testQueuePrefix("queue-receipted-paused");
    const pausedQueue = createQueue(QueueName.Parse, redis, pausedPrefix);
    const pausedAdder = createReceiptedAdder(pausedQueue, redis, PARSE_JOB_NAME, {
      prefix: pausedPrefix,
      ttlSeconds: 60,
    });
    try {
      await pausedQueue.pause();
      const viaBullmq = randomUUID();
      const viaAdder = randomUUID();
      await pausedQueue.add(PARSE_JOB_NAME, payload(viaBullmq), { jobId: viaBullmq });
      const marker = `${pausedPrefix}:${QueueName.Parse}:marker`;
      const markerAfterBullmq = await redis.zcard(marker);
      await pausedAdder.add([{ id: viaAdder, data: payload(viaAdder), deliveries: 1 }], Date.now());
      const key = (list: string) => `${pausedPrefix}:${QueueName.Parse}:${list}`;
      const where = async (id: string) =>
        (await redis.lrange(key("wait"), 0, -1)).includes(id)
          ? "wait"
          : (await redis.lrange(key("paused"), 0, -1)).includes(id)
            ? "paused"
            : "neither";
      expect(await where(viaAdder)).toBe(await where(viaBullmq));
      expect(await where(viaAdder)).not.toBe("neither");
      expect(await redis.zcard(marker)).toBe(markerAfterBullmq);
      expect(await pausedQueue.getWaitingCount()).toBe(2);
    } finally {
      await pausedQueue.close();
      await deletePrefix(pausedPrefix);
    }
  });

  it("hands its jobs to a real BullMQ Worker with data and options intact", async () => {
    const workerPrefix = testQueuePrefix("queue-receipted-worker");
    const workerQueue = createQueue(QueueName.Parse, redis, workerPrefix);
    const workerAdder = createReceiptedAdder(workerQueue, redis, PARSE_JOB_NAME, {
      prefix: workerPrefix,
      ttlSeconds: 60,
    });
    const ids = Array.from({ length: 20 }, () => randomUUID());
    const processed = processedJobs(QueueName.Parse, workerPrefix, ids.length);
    try {
      await workerAdder.add(
        ids.map((id) => ({ id, data: payload(id), deliveries: 1 })),
        Date.now(),
      );
      const seen = await processed;
      expect(seen.map((j) => j.id).sort()).toEqual([...ids].sort());
      for (const job of seen) {
        expect(job.name).toBe(PARSE_JOB_NAME);
        expect(job.data).toEqual(payload(job.id ?? ""));
        expect(job.opts.attempts).toBe(20);
        expect(job.opts.removeOnComplete).toEqual({ age: 3_600, count: 10_000 });
      }
    } finally {
      await workerQueue.close();
      await deletePrefix(workerPrefix);
    }
  });
});
