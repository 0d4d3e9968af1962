import { createQueue, createRedisConnection, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { type JobsOptions, type Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { boardHeaders, type Client, loggedIn } from "./support/client.ts";

/**
 * An operator's "Retry" in bull-board, through the dashboard's own API (the board's adapter, its auth and CSRF), on a
 * real queue consumed by a real Worker: the job gets its attempts again, so a fault its next run meets is retried
 * with the backoff instead of failing it for good at once.
 */
let d: TestDashboard;
let publish: Queue;
let consumer: Worker;
let consumerConnection: Redis;
/** Attempts of each job still to fail, by job id (the merchant's ERP down, then one more blip). */
const failuresLeft = new Map<string, number>();
const delivered: string[] = [];

/** Few attempts and a short fixed backoff, so a job uses them all within the test (the default: 20 over days). */
const ATTEMPTS = 3;
const JOB_OPTIONS: JobsOptions = { attempts: ATTEMPTS, backoff: { type: "fixed", delay: 100 } };

beforeAll(async () => {
  d = await startDashboard("dash_retry");
  publish = createQueue(QueueName.Publish, d.redis, d.prefix);
  consumerConnection = createRedisConnection(TEST_REDIS_URL, "worker");
  // The merchant's consumer: its ERP fails an attempt while the job has failures left.
  consumer = new Worker(
    QueueName.Publish,
    async (job) => {
      const id = job.id ?? "";
      const left = failuresLeft.get(id) ?? 0;
      if (left > 0) {
        failuresLeft.set(id, left - 1);
        throw new Error("ERP unavailable");
      }
      delivered.push(id);
    },
    { connection: consumerConnection, prefix: d.prefix },
  );
});
afterAll(async () => {
  await consumer?.close();
  consumerConnection?.disconnect();
  await publish?.close();
  await d?.close();
});

/** Waits until job `id` of `queue` (notify.publish by default) is completed or failed; its state then. */
function finished(id: string, queue: Queue = publish): Promise<string> {
  return vi.waitFor(
    async () => {
      const state = await queue.getJobState(id);
      if (state !== "completed" && state !== "failed") throw new Error(`job ${id} is ${state}`);
      return state;
    },
    { timeout: 15_000, interval: 50 },
  );
}

/** An event whose consumer fails every attempt: added, then waited for until failed for good. */
async function failedForGood(id: string): Promise<void> {
  failuresLeft.set(id, ATTEMPTS);
  await publish.add("payment.succeeded", { v: 1, notificationId: id }, { ...JOB_OPTIONS, jobId: id });
  expect(await finished(id)).toBe("failed");
  expect((await publish.getJob(id))?.attemptsMade).toBe(ATTEMPTS);
}

async function operator(): Promise<{ client: Client; headers: Record<string, string> }> {
  const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
  return { client, headers: await boardHeaders(client) };
}

describe("bull-board's retry of a failed job", () => {
  it("one job: its next run meets a fault, which is retried with the backoff, and the event is delivered", async () => {
    const id = "evt-retry-one";
    await failedForGood(id);
    // The ERP is back but blips once more.
    failuresLeft.set(id, 1);
    const { client, headers } = await operator();
    const response = await client.request("PUT", `/queues/api/queues/${QueueName.Publish}/${id}/retry`, { headers });
    expect(response.statusCode).toBe(204);
    // Before: the retried job kept attemptsMade 3 of 3, so the blip failed it for good (attemptsMade 4).
    expect(await finished(id)).toBe("completed");
    expect(delivered).toContain(id);
    // The blip and the delivery, counted from 0 again.
    expect((await publish.getJob(id))?.attemptsMade).toBe(2);
  }, 30_000);

  it("all failed jobs: each gets its attempts again", async () => {
    const ids = ["evt-retry-all-1", "evt-retry-all-2"];
    for (const id of ids) await failedForGood(id);
    for (const id of ids) failuresLeft.set(id, 1);
    const { failed } = await publish.getJobCounts("failed");
    const { client, headers } = await operator();
    const response = await client.request("PUT", `/queues/api/queues/${QueueName.Publish}/retry/failed`, { headers });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ retried: failed, skipped: 0 });
    for (const id of ids) {
      expect(await finished(id), id).toBe("completed");
      expect(delivered, id).toContain(id);
    }
  }, 30_000);
});

describe("bull-board's retry of a job failed for stalling too often", () => {
  it("counts its stalls from 0 again: one more stall puts it back, and it is applied", async () => {
    // A notify.apply job whose runs kept dying (worker README: stalled too often, its letter refused by Redis,
    // DEAD_LETTER_FAILED: kept failed for bull-board's retry). A run "dies" by losing its lock and hanging.
    const apply = createQueue(QueueName.Apply, d.redis, d.prefix);
    const connection = createRedisConnection(TEST_REDIS_URL, "worker");
    const id = "apply-stalled";
    const lockKey = `${d.prefix}:${QueueName.Apply}:${id}:lock`;
    let stallsLeft = 2;
    const hanging: (() => void)[] = [];
    let applied = false;
    const worker = new Worker(
      QueueName.Apply,
      async () => {
        if (stallsLeft === 0) {
          applied = true;
          return;
        }
        stallsLeft--;
        await d.redis.del(lockKey);
        await new Promise<void>((resolve) => hanging.push(resolve));
      },
      // Concurrency: a run hangs while the next one starts.
      { connection, prefix: d.prefix, maxStalledCount: 1, stalledInterval: 200, concurrency: 4 },
    );
    // What a dead run's worker reports is what this test makes happen: its lock renewals and, once released below,
    // its late answer are refused (the lock is gone).
    worker.on("error", () => undefined);
    try {
      await apply.add("apply", { v: 1 }, { jobId: id, attempts: ATTEMPTS });
      expect(await finished(id, apply)).toBe("failed");
      expect((await apply.getJob(id))?.failedReason).toMatch(/stalled/);
      stallsLeft = 1;
      const { client, headers } = await operator();
      const response = await client.request("PUT", `/queues/api/queues/${QueueName.Apply}/${id}/retry`, { headers });
      expect(response.statusCode).toBe(204);
      // Before: its stall count 2 went on to 3, past maxStalledCount 1, and the job was failed again at once.
      expect(await finished(id, apply)).toBe("completed");
      expect(applied).toBe(true);
      expect(stallsLeft).toBe(0);
    } finally {
      for (const resolve of hanging) resolve();
      await worker.close(true);
      connection.disconnect();
      await apply.close();
    }
  }, 30_000);
});
