import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { type Job, type Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, expect } from "vitest";
import { createRedisConnection } from "../../src/index.ts";

/**
 * How BullMQ stored job `id` (hash `<queueKey>:<id>`), with the fields that legitimately differ between two jobs
 * (their id and add time) normalised, so a job added by one path can be compared with one added by `queue.add`.
 */
export async function storedJob(redis: Redis, queueKey: string, id: string): Promise<Record<string, unknown>> {
  const hash = await redis.hgetall(`${queueKey}:${id}`);
  const opts = JSON.parse(hash.opts ?? "null") as Record<string, unknown>;
  expect(opts.jobId).toBe(id);
  return { ...hash, opts: { ...opts, jobId: "<id>" }, data: JSON.parse(hash.data ?? "null"), timestamp: "<ts>" };
}

/**
 * Everything Redis holds under `queueKey` (`<prefix>:<queue name>`), key by key with the queue key cut off, in a
 * form two queues can be compared in: hashes with job add times normalised and `data`/`opts` parsed, lists and
 * sorted sets as stored, streams as their entries' fields (entry ids are times), strings as stored.
 */
export async function queueState(redis: Redis, queueKey: string): Promise<Record<string, unknown>> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", `${queueKey}:*`, "COUNT", 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== "0");
  const state: Record<string, unknown> = {};
  for (const key of keys.sort()) {
    const type = await redis.type(key);
    const name = key.slice(queueKey.length + 1);
    if (type === "hash") {
      const hash = await redis.hgetall(key);
      state[name] = {
        ...hash,
        ...(hash.timestamp === undefined ? {} : { timestamp: "<ts>" }),
        ...(hash.data === undefined ? {} : { data: JSON.parse(hash.data) }),
        ...(hash.opts === undefined ? {} : { opts: JSON.parse(hash.opts) }),
      };
    } else if (type === "list") state[name] = await redis.lrange(key, 0, -1);
    else if (type === "zset") state[name] = await redis.zrange(key, "0", "-1", "WITHSCORES");
    else if (type === "stream") state[name] = (await redis.xrange(key, "-", "+")).map(([, fields]) => fields);
    else if (type === "string") state[name] = await redis.get(key);
    else state[name] = `<${type}>`;
  }
  return state;
}

/**
 * The states (`queueState`) of two queues of `queueName` on fresh prefixes, one filled by `viaBullmq` (BullMQ's own
 * add path) and the other by `viaAdder`, for a test to compare; both queues are closed and their keys deleted.
 * `open` makes a queue (with the options under test) for a prefix.
 */
export async function statesAfterAdding(
  redis: Redis,
  queueName: string,
  open: (prefix: string) => Queue,
  viaBullmq: (queue: Queue) => Promise<unknown>,
  viaAdder: (queue: Queue, prefix: string) => Promise<unknown>,
): Promise<{ bullmq: Record<string, unknown>; adder: Record<string, unknown> }> {
  const prefixes = [testQueuePrefix("queue-by-bullmq"), testQueuePrefix("queue-by-adder")] as const;
  const queues = prefixes.map(open);
  try {
    const [bullmqQueue, adderQueue] = queues as [Queue, Queue];
    await viaBullmq(bullmqQueue);
    await viaAdder(adderQueue, prefixes[1]);
    return {
      bullmq: await queueState(redis, `${prefixes[0]}:${queueName}`),
      adder: await queueState(redis, `${prefixes[1]}:${queueName}`),
    };
  } finally {
    for (const queue of queues) await queue.close();
    for (const prefix of prefixes) await deletePrefix(prefix);
  }
}

/** The names of the events the queue's stream holds for job `id`, in order ("added", "waiting", …). */
export async function eventNamesOf(redis: Redis, queueKey: string, id: string): Promise<string[]> {
  const entries = await redis.xrange(`${queueKey}:events`, "-", "+");
  return entries.filter(([, f]) => f[3] === id).map(([, f]) => f[1] ?? "");
}

/**
 * Starts a real BullMQ Worker on `queueName` under `prefix` and resolves with the first `count` jobs it processed
 * (the worker is closed after the test file).
 */
export function processedJobs(queueName: string, prefix: string, count: number): Promise<Job[]> {
  const seen: Job[] = [];
  return new Promise((resolve) => {
    const worker = new Worker(
      queueName,
      async (job) => {
        seen.push(job);
        if (seen.length === count) setImmediate(() => resolve(seen));
      },
      { connection: createRedisConnection(TEST_REDIS_URL, "worker"), prefix, concurrency: 4 },
    );
    afterAll(() => worker.close());
  });
}
