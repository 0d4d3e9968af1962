import {
  createQueue,
  createRedisConnection,
  DEAD_JOB_NAME,
  type DeadLetter,
  deadLetterJobId,
  PARSE_JOB_NAME,
  QueueName,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { replayDeadLetter } from "../src/replay.ts";
import { startWorker } from "../src/worker.ts";
import { createWorld, quietLog, seedOrder, seedSkus, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A notification with two letters waiting: its parse job's (dead-lettered earlier, the failed parse job then retried
 * by hand: "a retry that succeeds leaves the letter behind") and its apply job's. While the apply letter waits the row
 * is DEAD (README, parse outcome DEAD): the failed apply job holds the notification's id, so an apply job enqueued
 * for it is collapsed into that one and never runs. Replaying the parse letter must leave it so — the apply letter's
 * replay is what applies it.
 */
let world: World;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let deadQueue: Queue;

beforeAll(async () => {
  world = await createWorld("wbothletters");
  await seedSkus(world.prisma, { A: 10 });
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  deadQueue = createQueue(QueueName.Dead, redis, world.prefix);
});
afterAll(async () => {
  await Promise.all([parseQueue, applyQueue, deadQueue].map((q) => q?.close()));
  redis?.disconnect();
  await world?.cleanup();
});

const notification = (id: string) =>
  world.prisma.notification.findUniqueOrThrow({ where: { id }, include: { events: { orderBy: { id: "asc" } } } });

it("replaying the parse letter while the apply letter waits keeps the row DEAD; the apply letter's replay applies it", async () => {
  const otn = `T-both-${Date.now()}`;
  const job = v3Payment(world, { outTradeNo: otn });
  const worker = await startWorker(world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "1" }), {
    logger: quietLog,
    healthPort: 0,
  });
  try {
    // The parse letter, as the parse stage wrote it for the job's first instance.
    const parseLetterId = deadLetterJobId(QueueName.Parse, job.id, Date.now() - 60_000);
    const parseLetter: DeadLetter = {
      v: 1,
      queue: QueueName.Parse,
      jobName: PARSE_JOB_NAME,
      jobId: job.id,
      notificationId: job.id,
      outTradeNo: null,
      code: "APIV2_KEY_MISSING",
      message: "no APIv2 key within the window",
      attemptsMade: 20,
      failedAt: Date.now() - 30_000,
      data: job,
    };
    await deadQueue.add(DEAD_JOB_NAME, parseLetter, { jobId: parseLetterId });
    // Parsed since (the retried parse job), its order missing past the 1 s window: the apply letter.
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("apply letter", async () => {
      const letters = await deadQueue.getJobs(["waiting"], 0, -1);
      return letters.find((l) => l.data.queue === QueueName.Apply && l.data.notificationId === job.id);
    });
    expect((await notification(job.id)).status).toBe("DEAD");

    const [parseReplay] = await replayDeadLetter(
      { connection: redis, prefix: world.prefix, prisma: world.prisma },
      parseLetterId,
    );
    expect(parseReplay?.status).toBe("replayed");
    await waitFor("replayed parse job completed", async () => (await parseQueue.getJobState(job.id)) === "completed");
    const afterParse = await notification(job.id);
    expect({ status: afterParse.status, errorCode: afterParse.errorCode }).toEqual({
      status: "DEAD",
      errorCode: "ORDER_NOT_FOUND",
    });
    expect(afterParse.events.map((e) => e.kind).slice(-2)).toEqual(["REPLAYED", "REDELIVERED"]);
    expect((await parseQueue.getJob(job.id))?.returnvalue).toMatchObject({ outcome: "DEAD" });

    const applyLetter = (await deadQueue.getJobs(["waiting"], 0, -1)).find((l) => l.data.queue === QueueName.Apply);
    await seedOrder(world, { outTradeNo: otn, amountTotal: 100, items: { A: 1 } });
    const [applyReplay] = await replayDeadLetter(
      { connection: redis, prefix: world.prefix, prisma: world.prisma },
      applyLetter?.id ?? "",
    );
    expect(applyReplay?.status).toBe("replayed");
    await waitFor("APPLIED", async () => (await notification(job.id)).status === "APPLIED");
  } finally {
    await worker.close();
  }
}, 60_000);
