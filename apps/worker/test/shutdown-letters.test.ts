import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";
import { zombieTakes } from "./support/zombie.ts";

// A job that stalls more often than WORKER_MAX_STALLED_COUNT is failed by BullMQ itself; the worker's `failed`
// listener then writes its dead letter. Nothing runs that job again, so a shutdown must not cut the write short.
// The letter's write is held here (the `add` to notify.dead waits) while the worker closes.
let world: World;
let redis: Redis;
let hold: { caught: () => void; released: Promise<void> } | undefined;
const realAdd = Queue.prototype.add;
beforeAll(async () => {
  Queue.prototype.add = async function (this: Queue, ...args: Parameters<Queue["add"]>) {
    const held = this.name === QueueName.Dead ? hold : undefined;
    if (held) {
      held.caught();
      await held.released;
    }
    return realAdd.apply(this, args);
  } as Queue["add"];
  world = await createWorld("wshutlet");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
});
afterAll(async () => {
  Queue.prototype.add = realAdd;
  redis?.disconnect();
  await world?.cleanup();
});

/**
 * A parse job that stalled too often, failed by a worker started with `overrides`, whose letter is held (the `add` to
 * notify.dead waits until `release`): the worker, the held job, and the release.
 */
async function stalledWithLetterHeld(outTradeNo: string, overrides: Record<string, string>) {
  const parse = createQueue(QueueName.Parse, redis, world.prefix);
  const job = v3Payment(world, { outTradeNo });
  try {
    await parse.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await zombieTakes(parse, world.prefix, job.id);

    let caught!: () => void;
    const writing = new Promise<void>((resolve) => {
      caught = resolve;
    });
    let release!: () => void;
    hold = {
      caught,
      released: new Promise<void>((resolve) => {
        release = resolve;
      }),
    };
    const { logger, lines } = capturedLog();
    const worker = await startWorker(
      world.config({ WORKER_MAX_STALLED_COUNT: "0", WORKER_STALLED_INTERVAL_MS: "500", ...overrides }),
      { logger, healthPort: 0 },
    );
    // BullMQ failed the stalled job; the listener's letter is on its way.
    await writing;
    expect(await parse.getJobState(job.id)).toBe("failed");
    return { worker, job, lines, release };
  } finally {
    await parse.close();
  }
}

it("close() waits for the dead letter of a job that stalled too often, being written when it was called", async () => {
  const dead = createQueue(QueueName.Dead, redis, world.prefix);
  const { worker, job, lines, release } = await stalledWithLetterHeld("T-stall", {
    WORKER_SHUTDOWN_TIMEOUT_MS: "10000",
  });
  try {
    const closing = worker.close();
    // The letter's write goes on when close() returns — or after 3 s, longer than close() takes without it.
    const timer = setTimeout(release, 3_000);
    await closing;
    release();
    clearTimeout(timer);
    const letters = (await dead.getJobs(["waiting"], 0, -1)).filter((l) => l.data.notificationId === job.id);
    expect(letters.map((l) => l.data.code)).toEqual(["JOB_STALLED_TOO_OFTEN"]);
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; code?: string });
    expect(logged.filter((l) => l.code === "DEAD_LETTER_FAILED")).toEqual([]);
    const order = logged.map((l) => l.msg).filter((msg) => msg === "dead-lettered" || msg === "worker stopped");
    expect(order).toEqual(["dead-lettered", "worker stopped"]);
  } finally {
    hold = undefined;
    release();
    await worker.close();
    await dead.close();
  }
}, 60_000);

it("a letter still unwritten when the shutdown's timeout passes is logged and counted DEAD_LETTER_FAILED, once", async () => {
  const { worker, job, lines, release } = await stalledWithLetterHeld("T-stall-cut", {
    WORKER_SHUTDOWN_TIMEOUT_MS: "500",
  });
  const failedLines = () =>
    lines
      .map((l) => JSON.parse(l) as { code?: string; queue?: string; jobId?: string; notificationId?: string })
      .filter((l) => l.code === "DEAD_LETTER_FAILED");
  const counted = async () =>
    (await worker.metrics.registry.getSingleMetricAsString("wpn_worker_errors_total"))
      .split("\n")
      .filter((l) => l.includes('code="DEAD_LETTER_FAILED"'));
  try {
    // The write is held past the timeout: close() gives up on it and closes Redis.
    await worker.close();
    // Reported by the time close() returns: the process exits right after (main.ts), the write never ends.
    expect(failedLines()).toEqual([
      expect.objectContaining({ queue: "notify.parse", jobId: job.id, notificationId: job.id }),
    ]);
    expect(await counted()).toEqual(['wpn_worker_errors_total{queue="notify.parse",code="DEAD_LETTER_FAILED"} 1']);
    // The write, let go on a closed connection, fails on its own later: not reported a second time.
    hold = undefined;
    release();
    // Its tries (deadLetter's writeLetter: 200 ms, 1 s, 3 s apart) fail, then it gives up.
    await waitFor(
      "the write's last try",
      async () => lines.filter((l) => l.includes("DEAD_LETTER_RETRY")).length === 3,
    );
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect(failedLines()).toHaveLength(1);
    expect(await counted()).toEqual(['wpn_worker_errors_total{queue="notify.parse",code="DEAD_LETTER_FAILED"} 1']);
  } finally {
    hold = undefined;
    release();
    await worker.close();
  }
}, 60_000);
