import { TEST_REDIS_URL } from "@wpn/testing";
import { type Job, Worker } from "bullmq";
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
