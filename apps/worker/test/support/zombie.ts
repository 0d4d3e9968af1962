import { createRedisConnection, type QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { type Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { waitFor } from "./wait.ts";

/**
 * A dying worker: takes the job `jobId` of `queue` (already added) and is gone, its lock not renewed — the job stalls
 * at the next stalled check of a worker (lock 1 s).
 */
export async function zombieTakes(queue: Queue, prefix: string, jobId: string): Promise<void> {
  const zombie = new Worker(queue.name as QueueName, () => new Promise(() => undefined), {
    connection: createRedisConnection(TEST_REDIS_URL, "worker"),
    prefix,
    lockDuration: 1_000,
    skipLockRenewal: true,
    skipStalledCheck: true,
  });
  await waitFor("zombie took the job", async () => (await queue.getJobState(jobId)) === "active");
  await zombie.close(true);
  await (zombie.opts.connection as Redis).quit();
}
