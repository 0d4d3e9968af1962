import { pruneNotifications } from "@wpn/db";
import {
  createQueue,
  createRedisConnection,
  PARSE_JOB_NAME,
  QueueName,
  type ReplayStatus,
  readWaitingLetters,
  replayDeadLetter as replayOne,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replayDeadLetter, replayDeps } from "../src/replay.ts";
import { startWorker } from "../src/worker.ts";
import { createWorld, quietLog, seedOrder, seedSkus, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

/**
 * `db:prune` and a dead letter of a settled notification's apply job: the row is kept while the letter waits — its
 * replay answers ALREADY and publishes the event the job owed, from the row — and pruned a retention after the replay.
 * Before, the prune deleted the row: the replay was dead-lettered NOTIFICATION_NOT_FOUND, again on every replay, and
 * the event was never published.
 */
let world: World;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let deadQueue: Queue;
let publishQueue: Queue;
const DAY = 24 * 3_600_000;
const LETTER_EVENTS = new Set(["DEAD_LETTERED", "REPLAYED", "REPLAY_FAILED"]);

beforeAll(async () => {
  world = await createWorld("wpruneletter");
  await seedSkus(world.prisma, { A: 1_000 });
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  deadQueue = createQueue(QueueName.Dead, redis, world.prefix);
  publishQueue = createQueue(QueueName.Publish, redis, world.prefix);
});
afterAll(async () => {
  await Promise.all([parseQueue, applyQueue, deadQueue, publishQueue].map((q) => q?.close()));
  redis?.disconnect();
  await world?.cleanup();
});

const notification = (id: string) =>
  world.prisma.notification.findUnique({ where: { id }, include: { events: { orderBy: { id: "asc" } } } });

/** The waiting apply-stage dead letters of `notificationId`. */
async function lettersOf(notificationId: string) {
  const letters = await deadQueue.getJobs(["waiting"], 0, -1, true);
  return letters.filter((j) => j.data?.queue === QueueName.Apply && j.data?.notificationId === notificationId);
}

/** Cron's `npm run db:prune -- --older-than 7d`, once the notification was received and last changed 8 days ago. */
async function pruneEightDaysOn(id: string) {
  await world.prisma.$executeRaw`
    UPDATE "Notification" SET "receivedAt" = "receivedAt" - interval '8 days', "updatedAt" = "updatedAt" - interval '8 days'
    WHERE id = ${id}`;
  return prune();
}

/** `npm run db:prune -- --older-than 7d`, with the letters waiting in this world's notify.dead. */
async function prune() {
  return pruneNotifications(world.prisma, {
    olderThanMs: 7 * DAY,
    waitingLetters: await readWaitingLetters(redis, world.prefix),
  });
}

/**
 * Runs `during` with a worker whose unknown-order window is 1 s, after queueing `job` — a payment whose order is missing —
 * and waiting for the apply-stage letter it is dead-lettered with (ORDER_NOT_FOUND).
 */
async function whileLettered(job: ReturnType<typeof v3Payment>, during: () => Promise<void> = async () => undefined) {
  const worker = await startWorker(world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "1" }), {
    logger: quietLog,
    healthPort: 0,
  });
  try {
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("apply letter", async () => (await lettersOf(job.id)).length > 0, 15_000);
    await during();
  } finally {
    await worker.close();
  }
}

/** Replays the letter with a worker running, until its apply job has ended; that job. */
async function replayed(letterId: string, config: Record<string, string> = {}, status: ReplayStatus = "replayed") {
  const worker = await startWorker(world.config(config), { logger: quietLog, healthPort: 0 });
  try {
    const [outcome] = await replayDeadLetter(
      { connection: redis, prefix: world.prefix, prisma: world.prisma },
      letterId,
    );
    expect(outcome?.status).toBe(status);
    const id = outcome?.notificationId ?? "";
    await waitFor("replayed apply job ended", async () =>
      ["completed", "failed"].includes(await applyQueue.getJobState(id)),
    );
    return applyQueue.getJob(id);
  } finally {
    await worker.close();
  }
}

/**
 * A payment applied whose payment.succeeded event could not be added on the apply job's last attempt: Redis refuses
 * the publish add (stands for OOM or READONLY on that command alone), so the apply commits, its event is not added,
 * and the job, retried, is dead-lettered QUEUE_UNAVAILABLE on its 20th attempt. The notification stays APPLIED.
 */
async function appliedEventUnsent() {
  const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
  const job = v3Payment(world, { outTradeNo: otn });
  const worker = await startWorker(world.config({ PUBLISH_EVENTS: "true" }), { logger: quietLog, healthPort: 0 });
  try {
    await redis.set(`${world.prefix}:${QueueName.Publish}:meta`, "poison");
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("apply retry scheduled", async () => (await applyQueue.getJobState(job.id)) === "delayed", 15_000);
    // Its last attempt now (the 20th, as after 19 failed ones).
    await redis.hset(`${world.prefix}:${QueueName.Apply}:${job.id}`, "atm", "19");
    await (await applyQueue.getJob(job.id))?.promote();
    await waitFor("apply letter", async () => (await lettersOf(job.id)).length > 0);
  } finally {
    await redis.del(`${world.prefix}:${QueueName.Publish}:meta`);
    await worker.close();
  }
  return job;
}

describe("db:prune and an apply letter of a settled notification", () => {
  it("applied, its event not added on the last attempt (QUEUE_UNAVAILABLE): kept until the replay published it", async () => {
    const job = await appliedEventUnsent();
    const [letter] = await lettersOf(job.id);
    expect(letter?.data.code).toBe("QUEUE_UNAVAILABLE");
    expect(await publishQueue.getJob(job.id)).toBeUndefined();
    // Settled, it keeps its status; the letter is on its timeline.
    const lettered = await notification(job.id);
    expect(lettered?.status).toBe("APPLIED");
    expect(lettered?.events.at(-1)).toMatchObject({
      kind: "DEAD_LETTERED",
      detail: { stage: QueueName.Apply, code: "QUEUE_UNAVAILABLE", deadLetterId: letter?.id },
    });

    // Before: deleted ({ APPLIED: 1 }), and the replay below dead-lettered again as NOTIFICATION_NOT_FOUND.
    expect((await pruneEightDaysOn(job.id)).notifications).toEqual({});
    expect(await notification(job.id)).not.toBeNull();

    const applyJob = await replayed(letter?.id ?? "", { PUBLISH_EVENTS: "true" });
    expect(applyJob?.returnvalue).toMatchObject({ outcome: "ALREADY" });
    // What the merchant was owed.
    expect((await publishQueue.getJob(job.id))?.name).toBe("payment.succeeded");
    expect(await lettersOf(job.id)).toEqual([]);
    const after = await notification(job.id);
    expect(after?.status).toBe("APPLIED");
    expect(after?.events.slice(-2).map((e) => e.kind)).toEqual(["DEAD_LETTERED", "REPLAYED"]);

    // The replay changed the row: kept a retention more (the replayed job might still have been waiting), then gone.
    expect((await prune()).notifications).toEqual({});
    expect((await pruneEightDaysOn(job.id)).notifications).toEqual({ APPLIED: 1 });
    expect(await notification(job.id)).toBeNull();
  }, 60_000);

  it("the letter a bull-board retry left behind: kept until replayed, whose job answers ALREADY", async () => {
    const otn = `T-retry-${Date.now()}`;
    const job = v3Payment(world, { outTradeNo: otn });
    await whileLettered(job, async () => {
      await seedOrder(world, { outTradeNo: otn, amountTotal: 100, items: { A: 1 } });
      // The operator retries the failed apply job in bull-board instead of replaying its letter: applied, the letter
      // stays.
      await (await applyQueue.getJob(job.id))?.retry("failed");
      await waitFor("APPLIED", async () => (await notification(job.id))?.status === "APPLIED");
    });
    const [letter] = await lettersOf(job.id);
    expect(letter?.data.code).toBe("ORDER_NOT_FOUND");

    // Before: deleted, and each replay of the letter was dead-lettered again as NOTIFICATION_NOT_FOUND.
    expect((await pruneEightDaysOn(job.id)).notifications).toEqual({});

    const applyJob = await replayed(letter?.id ?? "");
    expect(applyJob?.returnvalue).toMatchObject({ outcome: "ALREADY" });
    expect(await lettersOf(job.id)).toEqual([]);
    expect((await pruneEightDaysOn(job.id)).notifications).toEqual({ APPLIED: 1 });
  }, 60_000);

  it("a letter whose row is gone anyway (recorded nowhere): dead-lettered NOTIFICATION_NOT_FOUND, saying why and what to do", async () => {
    const otn = `T-gone-${Date.now()}`;
    const job = v3Payment(world, { outTradeNo: otn });
    await whileLettered(job);
    const [letter] = await lettersOf(job.id);
    // As a prune of a release without the letter rule left it.
    await world.prisma.notification.delete({ where: { id: job.id } });

    const applyJob = await replayed(letter?.id ?? "");
    expect(await applyJob?.getState()).toBe("failed");
    const [again] = await lettersOf(job.id);
    expect(again?.data.code).toBe("NOTIFICATION_NOT_FOUND");
    expect(again?.data.message).toContain("`db:prune` may have deleted it once settled");
    expect(again?.data.message).toContain("replaying it again cannot help");
    expect(again?.data.message).toContain(`Order ${otn} shows what was applied`);
  }, 60_000);

  it("a replay stopped between its record and putting the job back: kept while its letter waits, and the next replay publishes the event", async () => {
    const job = await appliedEventUnsent();
    const [letter] = await lettersOf(job.id);
    // The replay records (REPLAYED, its DeadLetterReplay row), then stops before putting the job back — its process
    // killed there (a deploy, OOM). Its hook failing right after the record leaves the same: the record, the letter
    // still in notify.dead, no job.
    const wired = replayDeps({ connection: redis, prefix: world.prefix, prisma: world.prisma, actor: "test" });
    const stopped = await replayOne(
      {
        ...wired,
        onReplayed: async (l, attempt) => {
          await wired.onReplayed?.(l, attempt);
          throw new Error("replay process killed after its record");
        },
      },
      letter?.id ?? "",
    );
    expect(stopped.status).toBe("failed");
    expect((await lettersOf(job.id)).map((l) => l.id)).toEqual([letter?.id]);
    // The row's latest letter event is REPLAYED now, as after a replay that finished.
    expect((await notification(job.id))?.events.at(-1)?.kind).toBe("REPLAYED");

    // Before: { APPLIED: 1 } — the row and its timeline deleted while the letter waited; the replay below, resumed,
    // was dead-lettered NOTIFICATION_NOT_FOUND and the payment.succeeded the merchant was owed never published.
    const pruned = (await pruneEightDaysOn(job.id)).notifications;
    const applyJob = await replayed(letter?.id ?? "", { PUBLISH_EVENTS: "true" }, "resumed");
    const after = await notification(job.id);
    expect({
      pruned,
      applyJob: applyJob?.returnvalue?.outcome ?? applyJob?.failedReason,
      published: (await publishQueue.getJob(job.id))?.name ?? null,
      letters: (await lettersOf(job.id)).map((l) => l.data.code),
      status: after?.status ?? null,
      letterEvents: after?.events.map((e) => e.kind).filter((k) => LETTER_EVENTS.has(k)) ?? null,
    }).toEqual({
      pruned: {},
      applyJob: "ALREADY",
      published: "payment.succeeded",
      letters: [],
      status: "APPLIED",
      // One REPLAYED: the resumed replay completed the stopped one's record without writing another.
      letterEvents: ["DEAD_LETTERED", "REPLAYED"],
    });
  }, 60_000);
});
