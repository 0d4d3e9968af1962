import { once } from "node:events";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { Backoffs, type Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type BulkAdder, createBulkAdder, createQueue, createRedisConnection, QueueName } from "../src/index.ts";
import { defaultJobOptions } from "../src/options.ts";

// notify.publish is consumed by the merchant's own BullMQ worker; no worker of ours sees its failures, so nothing
// dead-letters a failed event. Its retries must outlast an outage of the merchant's systems, and a job out of
// attempts must stay until someone retries it: it is the event's only copy (delivery is at least once).
const prefix = testQueuePrefix("queue-publish");
const DAY_MS = 24 * 3_600 * 1_000;
let redis: Redis;
let queue: Queue;
let adder: BulkAdder;

beforeAll(async () => {
  redis = createRedisConnection(TEST_REDIS_URL, "worker");
  await once(redis, "ready");
  queue = createQueue(QueueName.Publish, redis, prefix);
  adder = createBulkAdder(queue, redis);
});
afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await deletePrefix(prefix);
});

const event = (id: string) => ({ v: 1, type: "payment.succeeded", notificationId: id, amount: 100 });

describe("notify.publish retry budget and retention", () => {
  it("retries for at least 3 days with BullMQ's built-in backoff (the consumer's worker knows no other)", async () => {
    const options = defaultJobOptions[QueueName.Publish];
    const backoff = options.backoff as { type: string; delay: number; jitter: number };
    expect(backoff.type).toBe("exponential");
    // BullMQ's own strategy, each delay at the low end of its jitter.
    const random = vi.spyOn(Math, "random").mockReturnValue(0);
    try {
      let least = 0;
      for (let made = 1; made < (options.attempts ?? 1); made++) {
        least += (await Backoffs.calculate(backoff, made, new Error("ERP unavailable"), undefined as never)) ?? 0;
      }
      expect(least).toBeGreaterThanOrEqual(3 * DAY_MS);
    } finally {
      random.mockRestore();
    }
  });

  it("keeps a job failed on its last attempt, whatever its age and the consumer's removeOnFail", async () => {
    const attempts = defaultJobOptions[QueueName.Publish].attempts ?? 1;
    /** Adds an event as the apply worker does and has a consumer fail it on its last attempt. */
    const failForGood = async (id: string) => {
      expect(await adder.add([{ name: "payment.succeeded", id, data: event(id) }], Date.now())).toBe(1);
      // As after attempts 1 … n−1 (their backoff would take days): the next attempt is the last.
      await redis.hset(`${prefix}:${QueueName.Publish}:${id}`, "atm", String(attempts - 1));
      // The merchant's consumer, its ERP down, with a removeOnFail of its own (the job's option wins). Started once
      // the job is set up, so that it takes no attempt before.
      const consumer = new Worker(
        QueueName.Publish,
        async () => {
          throw new Error("ERP unavailable");
        },
        { connection: createRedisConnection(TEST_REDIS_URL, "worker"), prefix, removeOnFail: { age: 1 } },
      );
      try {
        for (let tries = 0; (await queue.getJobState(id)) !== "failed"; tries++) {
          if (tries > 200) throw new Error(`job ${id} did not fail`);
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await consumer.close();
        await (consumer.opts.connection as Redis).quit();
      }
    };
    await failForGood("old-event");
    // Failed 8 days ago: past any age-based retention of a week.
    await redis.zadd(`${prefix}:${QueueName.Publish}:failed`, "XX", Date.now() - 8 * DAY_MS, "old-event");
    // BullMQ trims the failed set when another job fails.
    await failForGood("new-event");
    for (const id of ["old-event", "new-event"]) {
      const job = await queue.getJob(id);
      expect(await job?.getState()).toBe("failed");
      expect(job?.attemptsMade).toBe(attempts);
      expect(job?.data).toEqual(event(id));
    }
    expect(await queue.getJobCounts("failed")).toEqual({ failed: 2 });
  }, 30_000);
});
