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
  replayAllDeadLetters,
  replayDeadLetter,
} from "../src/index.ts";
import { eventNamesOf, storedJob } from "./support/stored-jobs.ts";

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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A letter of an apply job, in notify.dead under `apply.<jobId>.1`; returns the letter's id. */
async function letterFor(jobId: string): Promise<string> {
  const letter: DeadLetter = {
    v: 1,
    queue: QueueName.Apply,
    jobName: APPLY_JOB_NAME,
    jobId,
    notificationId: jobId,
    outTradeNo: null,
    code: "ORDER_NOT_FOUND",
    message: "no order",
    attemptsMade: 3,
    failedAt: Date.now(),
    data: { v: 1, notificationId: jobId },
  };
  const job = await dead.add(DEAD_JOB_NAME, letter, { jobId: `apply.${jobId}.1` });
  return job.id ?? "";
}

const claimKey = (letterId: string) => `${prefix}:${QueueName.Dead}:replaying:${letterId}`;

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
        return "recorded" as const;
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
  it("puts the job back as queue.add writes it (one script with the letter's mark)", async () => {
    const id = await letterFor("n-as-added");
    expect((await replayDeadLetter({ connection: redis, prefix }, id)).status).toBe("replayed");
    await apply.add(APPLY_JOB_NAME, { v: 1, notificationId: "n-as-added" }, { jobId: "n-as-added-by-bullmq" });
    const queueKey = `${prefix}:${QueueName.Apply}`;
    expect(await storedJob(redis, queueKey, "n-as-added")).toEqual(
      await storedJob(redis, queueKey, "n-as-added-by-bullmq"),
    );
    expect(await eventNamesOf(redis, queueKey, "n-as-added")).toEqual(
      await eventNamesOf(redis, queueKey, "n-as-added-by-bullmq"),
    );
  });

  it("a replay whose hook outlives the claim's life keeps its claim: a second replay meanwhile does nothing", async () => {
    const id = await letterFor("n-slow-hook");
    const recorded: string[] = [];
    // The claim lasts 300 ms unless renewed; the hook takes 1 s (a slow database).
    const slow = replayDeadLetter(
      {
        connection: redis,
        prefix,
        claimMs: 300,
        onReplayed: async () => {
          recorded.push("slow");
          await sleep(1_000);
          return "recorded" as const;
        },
      },
      id,
    );
    await sleep(700);
    const second = await replayDeadLetter(
      {
        connection: redis,
        prefix,
        claimMs: 300,
        onReplayed: async () => {
          recorded.push("second");
          return "recorded" as const;
        },
      },
      id,
    );
    // Before (SET NX EX, never renewed): the claim had expired, the second replay ran beside the first.
    expect(second.status).toBe("in-flight");
    expect((await slow).status).toBe("replayed");
    expect(recorded).toEqual(["slow"]);
    expect(await redis.exists(claimKey(id))).toBe(0);
  });

  it("a replay that lost its claim leaves the claim another replay holds now", async () => {
    const id = await letterFor("n-lost-claim");
    const outcome = await replayDeadLetter(
      {
        connection: redis,
        prefix,
        // As if this replay's claim expired (a process paused longer than its life) and another replay took it.
        onReplayed: async () => {
          await redis.set(claimKey(id), "another replay's token", "PX", 60_000);
          return "recorded" as const;
        },
      },
      id,
    );
    expect(outcome.status).toBe("replayed");
    // Before: `del` deleted whoever's claim it was.
    expect(await redis.get(claimKey(id))).toBe("another replay's token");
    await redis.del(claimKey(id));
  });

  it("the hook runs before the job is back; an add that fails is reported, leaves the letter, and a second replay completes it", async () => {
    const id = await letterFor("n-add-fails");
    const seen: (string | undefined)[] = [];
    const undone: string[] = [];
    const deps = {
      connection: redis,
      prefix,
      onReplayed: async (l: DeadLetter) => {
        seen.push(await (await apply.getJob(l.jobId))?.getState());
        return "recorded" as const;
      },
      onReplayFailed: async (l: DeadLetter, message: string) => {
        undone.push(`${l.notificationId}: ${message}`);
        return true;
      },
    };
    // The add reads the stage queue's `meta` hash first: a `meta` that is not a hash fails it before it writes
    // anything, as a Redis refusing writes would.
    const meta = `${prefix}:${QueueName.Apply}:meta`;
    const saved = await redis.dumpBuffer(meta);
    await redis.set(meta, "not a hash");
    let failed: Awaited<ReturnType<typeof replayDeadLetter>>;
    try {
      failed = await replayDeadLetter(deps, id);
    } finally {
      await redis.del(meta);
      if (saved) await redis.restore(meta, 0, saved);
    }
    // Before: the call rejected.
    expect(failed).toMatchObject({ id, status: "failed", queue: QueueName.Apply, notificationId: "n-add-fails" });
    expect(failed.message).toMatch(/WRONGTYPE/);
    expect(seen).toEqual([undefined]);
    // The record the hook wrote is undone.
    expect(undone).toEqual([`n-add-fails: ${failed.message}`]);
    expect(await apply.getJob("n-add-fails")).toBeUndefined();
    expect(await dead.getJob(id)).toBeDefined();

    expect((await replayDeadLetter(deps, id)).status).toBe("replayed");
    expect(seen).toEqual([undefined, undefined]);
    expect(undone).toHaveLength(1);
    expect(await (await apply.getJob("n-add-fails"))?.getState()).toBe("waiting");
    expect(await dead.getJob(id)).toBeUndefined();
  });

  it("a put-back that fails after it wrote the job: the job is back, so the letter is removed and nothing undone", async () => {
    const id = await letterFor("n-add-fails-late");
    const undone: string[] = [];
    const deps = {
      connection: redis,
      prefix,
      onReplayFailed: async (l: DeadLetter) => {
        undone.push(l.jobId);
        return true;
      },
    };
    // The script counts the job in the queue's id counter after writing it (as BullMQ's bulk add does): a counter that
    // is not a number fails the script once the job is written.
    const counter = `${prefix}:${QueueName.Apply}:id`;
    const before = await redis.get(counter);
    await redis.set(counter, "not a number");
    let outcome: Awaited<ReturnType<typeof replayDeadLetter>>;
    try {
      outcome = await replayDeadLetter(deps, id);
    } finally {
      await (before === null ? redis.del(counter) : redis.set(counter, before));
    }
    expect(outcome).toMatchObject({ id, status: "replayed" });
    expect(undone).toEqual([]);
    expect(await (await apply.getJob("n-add-fails-late"))?.getState()).toBe("waiting");
    expect(await dead.getJob(id)).toBeUndefined();
  });

  it("a replay another one took the letter from while its claim had expired puts nothing back and undoes nothing of the other's", async () => {
    const id = await letterFor("n-taken-over");
    const events: string[] = [];
    const second = {
      connection: redis,
      prefix,
      onReplayed: async () => {
        events.push("second: resumed the first's record");
        return "resumed" as const;
      },
    };
    const first = await replayDeadLetter(
      {
        connection: redis,
        prefix,
        onReplayed: async () => {
          events.push("first: recorded");
          // Its claim expires (the process paused longer than the claim's life), and a second replay takes the letter.
          await redis.del(claimKey(id));
          const taken = await replayDeadLetter(second, id);
          events.push(`second: ${taken.status}`);
          return "recorded" as const;
        },
        onReplayFailed: async () => {
          events.push("first: undo refused, the record is the second's");
          return false;
        },
      },
      id,
    );
    expect(first).toMatchObject({ id, status: "in-flight" });
    expect(first.message).toMatch(/later replay of this letter has taken/);
    expect(events).toEqual([
      "first: recorded",
      "second: resumed the first's record",
      "second: resumed",
      "first: undo refused, the record is the second's",
    ]);
    expect(await (await apply.getJob("n-taken-over"))?.getState()).toBe("waiting");
    expect(await dead.getJob(id)).toBeUndefined();
  });
});

describe("replayDeadLetter of an id no letter can have", () => {
  it("is not-found, without reading the dead-letter queue's own keys (`events` is a stream: WRONGTYPE was `failed`)", async () => {
    await letterFor("n-keys-exist"); // notify.dead's keys exist: `events`, `meta`, `id`
    const recorded: string[] = [];
    const deps = {
      connection: redis,
      prefix,
      onReplayed: async (l: DeadLetter) => {
        recorded.push(l.jobId);
        return "recorded" as const;
      },
    };
    for (const id of ["events", "meta", "id", "12345"]) {
      expect(await replayDeadLetter(deps, id), id).toEqual({ id, status: "not-found" });
    }
    expect(recorded).toEqual([]);
  });
});

describe("replayAllDeadLetters", () => {
  it("a letter whose hook throws is reported failed and left; the others are replayed", async () => {
    const ids = [await letterFor("n-all-1"), await letterFor("n-all-2"), await letterFor("n-all-3")];
    const outcomes = await replayAllDeadLetters({
      connection: redis,
      prefix,
      onReplayed: async (l) => {
        if (l.jobId === "n-all-2") throw new Error("database refused the REPLAYED event");
        return "recorded";
      },
    });
    // Before: the throw ended the loop and the call rejected, hiding what it had replayed.
    const mine = outcomes.filter((o) => ids.includes(o.id));
    expect(mine.map((o) => [o.id, o.status, o.message])).toEqual([
      [ids[0], "replayed", undefined],
      [ids[1], "failed", "database refused the REPLAYED event"],
      [ids[2], "replayed", undefined],
    ]);
    expect(await dead.getJob(ids[1] ?? "")).toBeDefined();
    expect(await apply.getJob("n-all-2")).toBeUndefined();
    expect(await apply.getJob("n-all-3")).toBeDefined();
  });
});
