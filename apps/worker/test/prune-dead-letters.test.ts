import { type PruneResult, pruneNotifications } from "@wpn/db";
import {
  APPLY_JOB_NAME,
  createQueue,
  createRedisConnection,
  DEAD_JOB_NAME,
  type DeadLetter,
  type DeadLetterStage,
  deadLetterJobId,
  PARSE_JOB_NAME,
  QueueName,
  readWaitingLetters,
  replayDeadLetter,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { replayDeps } from "../src/replay.ts";
import { createWorld, type World } from "./support/fixtures.ts";

/**
 * `db:prune` against the dead letters actually waiting in Redis (no worker: rows and letters written as the worker
 * writes them): a notification a letter in notify.dead names is kept, whatever its timeline says; a DeadLetterReplay
 * row is deleted once its letter is gone and it is older than the retention, and kept while its letter waits — the
 * row is what makes the next replay of that letter complete a stopped one (`resumed`) instead of recording it again.
 */
let world: World;
let redis: Redis;
let deadQueue: Queue;
let applyQueue: Queue;
const DAY = 24 * 3_600_000;
const NOW = Date.now();

beforeAll(async () => {
  world = await createWorld("wprunedl");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  deadQueue = createQueue(QueueName.Dead, redis, world.prefix);
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
});
afterAll(async () => {
  await Promise.all([deadQueue, applyQueue].map((q) => q?.close()));
  redis?.disconnect();
  await world?.cleanup();
});
beforeEach(async () => {
  await world.prisma.$executeRawUnsafe(`TRUNCATE "NotificationEvent", "Notification", "DeadLetterReplay"`);
  await deadQueue.obliterate({ force: true });
  await applyQueue.obliterate({ force: true });
});

/** `npm run db:prune -- --older-than 30d` as of NOW, with the letters waiting in this world's notify.dead. */
const prune = async (dryRun = false): Promise<PruneResult> =>
  pruneNotifications(world.prisma, {
    olderThanMs: 30 * DAY,
    now: NOW,
    dryRun,
    waitingLetters: await readWaitingLetters(redis, world.prefix),
  });

/** A notification received and last changed `days` before NOW, with letter events `[kind, queue]` in this order. */
async function notification(id: string, status: string, days: number, ...events: [string, DeadLetterStage][]) {
  const at = new Date(NOW - days * DAY);
  await world.prisma.$executeRaw`INSERT INTO "Notification" (id, "eventType", "receivedAt", "updatedAt", body, status)
    VALUES (${id}, 'TRANSACTION.SUCCESS', ${at}, ${at}, '{}', ${status}::"NotificationStatus")`;
  for (const [kind, queue] of events) {
    const detail = kind === "DEAD_LETTERED" ? { stage: queue, code: "QUEUE_UNAVAILABLE" } : { queue };
    await world.prisma.$executeRaw`INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
      VALUES (${id}, ${at}, ${kind}, ${JSON.stringify(detail)}::jsonb)`;
  }
}

/** Writes the dead letter of `notificationId`'s job in `queue` as the worker does (stage.ts writeLetter); its id. */
async function letter(notificationId: string, queue: DeadLetterStage = QueueName.Apply): Promise<string> {
  const id = deadLetterJobId(queue, notificationId, NOW - 40 * DAY);
  const data: DeadLetter = {
    v: 1,
    queue,
    jobName: queue === QueueName.Apply ? APPLY_JOB_NAME : PARSE_JOB_NAME,
    jobId: notificationId,
    notificationId,
    outTradeNo: null,
    code: "QUEUE_UNAVAILABLE",
    message: "publish add refused",
    attemptsMade: 20,
    failedAt: NOW - 40 * DAY,
    data: { notificationId },
  };
  await deadQueue.add(DEAD_JOB_NAME, data, { jobId: id });
  return id;
}

/** A DeadLetterReplay row as recordReplay / recordReplayFailed leave it, last changed `days` before NOW. */
async function replayRecord(letterId: string, days: number, undone = false) {
  await world.prisma
    .$executeRaw`INSERT INTO "DeadLetterReplay" ("letterId", "notificationId", fence, undone, actor, "changedAt")
    VALUES (${letterId}, NULL, 1, ${undone}, 'test', ${new Date(NOW - days * DAY)})`;
}

const notificationIds = async () =>
  (await world.prisma.notification.findMany({ select: { id: true }, orderBy: { id: "asc" } })).map((n) => n.id);
const replayRecordIds = async () =>
  (await world.prisma.deadLetterReplay.findMany({ select: { letterId: true }, orderBy: { letterId: "asc" } })).map(
    (r) => r.letterId,
  );

describe("db:prune keeps a notification a waiting dead letter names", () => {
  it("by the letters in notify.dead, not only by the row's latest letter event", async () => {
    // A replay that recorded (REPLAYED) and stopped before putting the job back: the letter still waits.
    await notification(
      "n-replay-stopped",
      "APPLIED",
      60,
      ["DEAD_LETTERED", QueueName.Apply],
      ["REPLAYED", QueueName.Apply],
    );
    await letter("n-replay-stopped");
    // A letter whose DEAD_LETTERED could not be recorded (DEAD_NOT_RECORDED), or written before that rule.
    await notification("n-not-recorded", "DUPLICATE", 60);
    await letter("n-not-recorded");
    // A parse-stage letter: replayed after the prune it would parse a new row (DUPLICATE), the original's gone.
    await notification("n-parse-letter", "IGNORED", 60, ["DEAD_LETTERED", QueueName.Parse]);
    await letter("n-parse-letter", QueueName.Parse);
    // Pruned as before: the letter was replayed and is gone.
    await notification("n-replayed", "APPLIED", 60, ["DEAD_LETTERED", QueueName.Apply], ["REPLAYED", QueueName.Apply]);

    expect((await prune(true)).notifications).toEqual({ APPLIED: 1 });
    // Before: { APPLIED: 2, DUPLICATE: 1, IGNORED: 1 } — every one of them deleted.
    expect((await prune()).notifications).toEqual({ APPLIED: 1 });
    expect(await notificationIds()).toEqual(["n-not-recorded", "n-parse-letter", "n-replay-stopped"]);
  });
});

describe("db:prune and DeadLetterReplay rows", () => {
  it("deletes a row older than the retention whose letter is gone; keeps one whose letter waits, and a young one", async () => {
    const waiting = await letter("r-waiting");
    const undone = await letter("r-undone");
    await replayRecord("apply.r-gone.1", 60);
    // Recorded and stopped before its job went back, or undone (the job could not be put back): the letter waits.
    await replayRecord(waiting, 60);
    await replayRecord(undone, 60, true);
    await replayRecord("apply.r-young.1", 29);
    const all = ["apply.r-gone.1", "apply.r-young.1", undone, waiting].sort();

    expect((await prune(true)).replayRecords).toBe(1);
    expect(await replayRecordIds()).toEqual(all);
    // Before: never deleted (undefined, all four rows left).
    expect((await prune()).replayRecords).toBe(1);
    expect(await replayRecordIds()).toEqual(all.filter((id) => id !== "apply.r-gone.1"));
  });

  it("a kept row still fences its letter: the replay after the prune completes the stopped one, recording once", async () => {
    // DEAD: never pruned itself, so only the replay row is at stake here.
    await notification("f-dead", "DEAD", 60, ["DEAD_LETTERED", QueueName.Apply]);
    const letterId = await letter("f-dead");
    const wired = replayDeps({ connection: redis, prefix: world.prefix, prisma: world.prisma, actor: "test" });
    // The first replay records, then stops before putting the job back (its process killed there).
    const stopped = await replayDeadLetter(
      {
        ...wired,
        onReplayed: async (l, attempt) => {
          await wired.onReplayed?.(l, attempt);
          throw new Error("replay process killed after its record");
        },
      },
      letterId,
    );
    expect(stopped.status).toBe("failed");
    await world.prisma.$executeRaw`UPDATE "DeadLetterReplay" SET "changedAt" = ${new Date(NOW - 60 * DAY)}`;

    await prune();
    expect(await replayRecordIds()).toEqual([letterId]);
    // Had the row gone, this replay would answer `replayed` and write a second REPLAYED event for one re-run.
    expect((await replayDeadLetter(wired, letterId)).status).toBe("resumed");
    const replayed = await world.prisma.notificationEvent.count({
      where: { notificationId: "f-dead", kind: "REPLAYED" },
    });
    expect(replayed).toBe(1);
    expect(await applyQueue.getJobState("f-dead")).toBe("waiting");
    expect(await deadQueue.getJob(letterId)).toBeUndefined();
  });
});
