import { once } from "node:events";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  APPLY_JOB_NAME,
  createQueue,
  createRedisConnection,
  DEAD_JOB_NAME,
  type DeadLetter,
  QueueName,
  replayDeadLetter,
} from "../src/index.ts";

const prefix = testQueuePrefix("queue-dead-letter");
let redis: Redis;
let apply: Queue;
let dead: Queue;

beforeAll(async () => {
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  await once(redis, "ready");
  apply = createQueue(QueueName.Apply, redis, prefix);
  dead = createQueue(QueueName.Dead, redis, prefix);
});
afterAll(async () => {
  await Promise.all([apply?.close(), dead?.close()]);
  await deletePrefix(prefix);
  redis?.disconnect();
});

describe("replayDeadLetter", () => {
  it("two replays of one letter at once: one puts the job back and records it, the other does nothing", async () => {
    const letter: DeadLetter = {
      v: 1,
      queue: QueueName.Apply,
      jobName: APPLY_JOB_NAME,
      jobId: "n-double-click",
      notificationId: "n-double-click",
      outTradeNo: "T1",
      code: "ORDER_NOT_FOUND",
      message: "no order",
      attemptsMade: 3,
      failedAt: Date.now(),
      data: { v: 1, notificationId: "n-double-click" },
    };
    const letterJob = await dead.add(DEAD_JOB_NAME, letter, { jobId: "apply.n-double-click.1" });
    const recorded: string[] = [];
    const deps = {
      connection: redis,
      prefix,
      // As slow as a database write, so the two calls overlap.
      onReplayed: async (l: DeadLetter) => {
        recorded.push(l.jobId);
        await new Promise((r) => setTimeout(r, 50));
      },
    };
    const outcomes = await Promise.all([
      replayDeadLetter(deps, letterJob.id ?? ""),
      replayDeadLetter(deps, letterJob.id ?? ""),
    ]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(["in-flight", "replayed"]);
    expect(recorded).toEqual(["n-double-click"]);
    expect(await apply.getJob("n-double-click")).toBeDefined();
    expect(await dead.getJob(letterJob.id ?? "")).toBeUndefined();
    // The claim is released: a later replay finds no letter rather than a claim.
    expect((await replayDeadLetter(deps, letterJob.id ?? "")).status).toBe("not-found");
  });
});
