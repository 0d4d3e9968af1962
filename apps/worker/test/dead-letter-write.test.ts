import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { createWorld, quietLog, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// The dead-letter write itself refused by Redis (READONLY right after a failover, which ioredis does not resend;
// OOM): injected by failing `add` on notify.dead `failures` times. A job must end with exactly one letter, with
// its own reason — never failed without one (nothing could replay it), never retried beside a wrong one.
let world: World;
let worker: WorkerHandle;
let redis: Redis;
let failures = 0;
const realAdd = Queue.prototype.add;
beforeAll(async () => {
  Queue.prototype.add = function (this: Queue, ...args: Parameters<Queue["add"]>) {
    if (this.name === QueueName.Dead && failures > 0) {
      failures -= 1;
      return Promise.reject(new Error("READONLY You can't write against a read only replica."));
    }
    return realAdd.apply(this, args);
  } as Queue["add"];
  world = await createWorld("deadwrite");
  worker = await startWorker(world.config(), { logger: quietLog, healthPort: 0 });
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
});
afterAll(async () => {
  Queue.prototype.add = realAdd;
  await worker?.close();
  redis?.disconnect();
  await world?.cleanup();
});

async function deadLettered(failing: number, outTradeNo: string, attempts?: number) {
  const parse = createQueue(QueueName.Parse, redis, world.prefix);
  const dead = createQueue(QueueName.Dead, redis, world.prefix);
  try {
    failures = failing;
    // For a merchant the worker has no keys for: MERCHANT_UNKNOWN, permanent.
    const job = { ...v3Payment(world, { outTradeNo }), mchid: "1900000999" };
    await parse.add(PARSE_JOB_NAME, job, { jobId: job.id, ...(attempts ? { attempts } : {}) });
    await waitFor("parse job failed", async () => (await parse.getJob(job.id))?.isFailed(), 30_000);
    const letters = (await dead.getJobs(["waiting"], 0, -1)).filter((l) => l.data.notificationId === job.id);
    const n = await world.prisma.notification.findUniqueOrThrow({
      where: { id: job.id },
      include: { events: { orderBy: { id: "asc" } } },
    });
    return { letters, notification: n, job: await parse.getJob(job.id) };
  } finally {
    await parse.close();
    await dead.close();
  }
}

describe("a dead letter Redis refuses at first", () => {
  it("is written on a retry within the attempt: one letter, its own reason, no retry of the job", async () => {
    const { letters, notification, job } = await deadLettered(2, "T-dlw-1");
    expect(letters.map((l) => l.data.code)).toEqual(["MERCHANT_UNKNOWN"]);
    expect(job?.attemptsMade).toBe(1);
    expect(notification).toMatchObject({ status: "DEAD", errorCode: "MERCHANT_UNKNOWN" });
    expect(notification.events.filter((e) => e.kind === "DEAD_LETTERED")).toHaveLength(1);
  }, 40_000);

  it("refused longer than the retries (on the job's only attempt): the job waits and runs again, then is dead-lettered", async () => {
    const { letters, notification } = await deadLettered(5, "T-dlw-2", 1);
    expect(letters.map((l) => l.data.code)).toEqual(["MERCHANT_UNKNOWN"]);
    expect(notification).toMatchObject({ status: "DEAD", errorCode: "MERCHANT_UNKNOWN" });
    expect(notification.events.filter((e) => e.kind === "DEAD_LETTERED")).toHaveLength(1);
  }, 40_000);
});
