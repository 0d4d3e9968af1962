import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { startDbProxy, TEST_REDIS_URL } from "@wpn/testing";
import { Worker } from "bullmq";
import { afterAll, afterEach, beforeAll, expect, it, vi } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// A BullMQ Worker whose main loop dies (WORKER_RUN_FAILED) takes no job again while the process goes on: liveness
// must fail and the process be told, so that it is restarted instead of idling as a zombie.
let world: World;
beforeAll(async () => {
  world = await createWorld("wrunfail");
});
afterEach(() => {
  vi.restoreAllMocks();
});
afterAll(async () => {
  await world?.cleanup();
});

it("a Worker's main loop that dies fails /health/live and is reported once to onRunFailed", async () => {
  // The first Worker started (parse) dies; the apply Worker runs as usual.
  vi.spyOn(Worker.prototype, "run").mockImplementationOnce(() => Promise.reject(new Error("main loop died")));
  const { logger, lines } = capturedLog();
  const failures: unknown[] = [];
  const worker = await startWorker(world.config(), {
    logger,
    healthPort: 0,
    onRunFailed: (error) => failures.push(error),
  });
  try {
    await waitFor("run failure reported", async () => failures.length > 0);
    const live = await fetch(`http://127.0.0.1:${worker.healthPort}/health/live`);
    expect(live.status).toBe(503);
    expect(await live.json()).toEqual({
      status: "failed",
      error: "notify.parse worker stopped: main loop died",
    });
    expect((await fetch(`http://127.0.0.1:${worker.healthPort}/health/ready`)).status).toBe(503);
    expect(failures).toEqual([expect.objectContaining({ message: "main loop died" })]);
    const fatal = lines.map((l) => JSON.parse(l)).filter((l) => l.code === "WORKER_RUN_FAILED");
    expect(fatal).toEqual([expect.objectContaining({ level: 60, queue: "notify.parse" })]);
  } finally {
    await worker.close();
  }
}, 30_000);

it("a main loop that BullMQ's resume() starts again after a PostgreSQL outage is watched like the first one", async () => {
  // The outage's pause(true) lets a Worker's loop end once its running jobs are done (run() resolves), and resume()
  // then calls run() itself and drops its promise (bullmq 6.7.0). The parse Worker's loop restarted that way dies
  // here. Before, nothing watched it: no WORKER_RUN_FAILED, /health/live stayed 200 — and in a process, an unhandled
  // rejection, on which main.ts exits at once, without closing. The run counts also pin that BullMQ behaviour: an
  // upgrade that keeps the loop through a pause, or whose resume() no longer starts it, fails here.
  const originalRun = Worker.prototype.run;
  let parseRuns = 0;
  let firstParseRun: Promise<string> | undefined;
  vi.spyOn(Worker.prototype, "run").mockImplementation(function (this: Worker) {
    if (this.name !== QueueName.Parse) return originalRun.call(this);
    parseRuns += 1;
    if (parseRuns > 1) return Promise.reject(new Error("restarted loop died"));
    const running = originalRun.call(this);
    firstParseRun = running.then(
      () => "ended",
      () => "failed",
    );
    return running;
  });
  const proxy = await startDbProxy(world.db.url);
  const redis = createRedisConnection(TEST_REDIS_URL, "admin");
  const parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  const { logger, lines } = capturedLog();
  const failures: unknown[] = [];
  const worker = await startWorker(world.config({ DATABASE_URL: proxy.via(world.db.url) }), {
    logger,
    healthPort: 0,
    onRunFailed: (error) => failures.push(error),
  });
  try {
    await proxy.down();
    const job = v3Payment(world, { outTradeNo: "RESUME-1", total: 100 });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("DB_OUTAGE logged", async () => lines.some((l) => l.includes('"code":"DB_OUTAGE"')));
    // The paused parse Worker's first loop ends by itself (no failure: nothing to report).
    expect(await firstParseRun).toBe("ended");
    expect(parseRuns).toBe(1);
    expect(failures).toEqual([]);

    await proxy.up();
    await waitFor("restarted loop's failure reported", async () => failures.length > 0);
    expect(parseRuns).toBe(2);
    expect(failures).toEqual([expect.objectContaining({ message: "restarted loop died" })]);
    const live = await fetch(`http://127.0.0.1:${worker.healthPort}/health/live`);
    expect(live.status).toBe(503);
    expect(await live.json()).toEqual({
      status: "failed",
      error: "notify.parse worker stopped: restarted loop died",
    });
    const fatal = lines.map((l) => JSON.parse(l)).filter((l) => l.code === "WORKER_RUN_FAILED");
    expect(fatal).toEqual([expect.objectContaining({ level: 60, queue: "notify.parse" })]);
  } finally {
    await worker.close();
    await parseQueue.close();
    redis.disconnect();
    await proxy.close();
  }
}, 60_000);

it("/health/live answers 200 while the Workers run", async () => {
  const worker = await startWorker(world.config(), { logger: capturedLog().logger, healthPort: 0 });
  try {
    const live = await fetch(`http://127.0.0.1:${worker.healthPort}/health/live`);
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ status: "ok" });
  } finally {
    await worker.close();
  }
}, 30_000);
