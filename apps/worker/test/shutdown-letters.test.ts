import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

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

it("close() waits for the dead letter of a job that stalled too often, being written when it was called", async () => {
  const parse = createQueue(QueueName.Parse, redis, world.prefix);
  const dead = createQueue(QueueName.Dead, redis, world.prefix);
  // A dying worker: takes the job and never renews its lock.
  const zombie = new Worker(QueueName.Parse, () => new Promise(() => undefined), {
    connection: createRedisConnection(TEST_REDIS_URL, "worker"),
    prefix: world.prefix,
    lockDuration: 1_000,
    skipLockRenewal: true,
    skipStalledCheck: true,
  });
  const job = v3Payment(world, { outTradeNo: "T-stall" });
  await parse.add(PARSE_JOB_NAME, job, { jobId: job.id });
  await waitFor("zombie took the job", async () => (await parse.getJobState(job.id)) === "active");
  await zombie.close(true);
  await (zombie.opts.connection as Redis).quit();

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
    world.config({
      WORKER_MAX_STALLED_COUNT: "0",
      WORKER_STALLED_INTERVAL_MS: "500",
      WORKER_SHUTDOWN_TIMEOUT_MS: "10000",
    }),
    { logger, healthPort: 0 },
  );
  try {
    // BullMQ failed the stalled job; the listener's letter is on its way.
    await writing;
    expect(await parse.getJobState(job.id)).toBe("failed");
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
    await parse.close();
    await dead.close();
  }
}, 60_000);
