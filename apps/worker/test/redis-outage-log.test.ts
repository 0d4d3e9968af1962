import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TestRedisServer } from "@wpn/testing";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { isRedisUnavailable } from "../src/redis-outage.ts";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// While Redis is down, what the worker says goes to its JSON log: BullMQ prints a Queue's unheard 'error' events to
// stderr (console.error), a multi-line dump per queue and reconnect attempt that log collectors cannot parse.
let world: World;
let redis: TestRedisServer;
beforeAll(async () => {
  world = await createWorld("wredislog");
  redis = await TestRedisServer.start();
});
afterAll(async () => {
  vi.restoreAllMocks();
  await redis?.kill();
  await world?.cleanup();
});

it("a Redis outage is logged as REDIS_ERROR, nothing printed to stderr by the worker's queues", async () => {
  const printed: unknown[][] = [];
  vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
    printed.push(args);
  });
  const { logger, lines } = capturedLog();
  const worker = await startWorker(world.config({ REDIS_URL: redis.url, PUBLISH_EVENTS: "true" }), {
    logger,
    healthPort: 0,
  });
  try {
    await redis.kill();
    await waitFor(
      "three reconnect attempts counted, the outage logged",
      async () =>
        (await worker.metrics.redisErrors.get()).values.reduce((sum, v) => sum + v.value, 0) >= 3 &&
        lines.some((l) => l.includes('"code":"REDIS_ERROR"')),
      15_000,
    );
    expect(printed).toEqual([]);
  } finally {
    await redis.restart();
    await worker.close();
  }
}, 30_000);

/** Pino's levels: 40 warn, 50 error. */
const WARN = 40;
const ERROR = 50;

it("a Redis restart is warned about a bounded number of times, not logged at error per reconnect attempt, and its end is logged", async () => {
  // Before: each BullMQ Worker logged every reconnect attempt of its connections as WORKER_ERROR at error level
  // (ECONNREFUSED, `Connection is closed.`, LOADING…): ~52 lines per queue and outage, each firing an error alert.
  const { logger, lines } = capturedLog();
  const admin = createRedisConnection(redis.url, "admin");
  admin.on("error", () => undefined);
  const parseQueue = createQueue(QueueName.Parse, admin, world.prefix);
  const deadQueue = createQueue(QueueName.Dead, admin, world.prefix);
  const worker = await startWorker(world.config({ REDIS_URL: redis.url }), { logger, healthPort: 0 });
  const parsed = () => lines.map((l) => JSON.parse(l) as { level: number; code?: string; msg: string });
  try {
    await redis.kill();
    // Reconnect attempts back off up to 2 s, BullMQ's Workers retry their loop too: 6 s is many attempts per connection.
    await new Promise((r) => setTimeout(r, 6_000));
    const during = parsed();
    expect(during.filter((l) => l.level >= ERROR)).toEqual([]);
    expect(during.filter((l) => l.level === WARN).length).toBeLessThanOrEqual(3);
    expect(during.filter((l) => l.code === "REDIS_ERROR").length).toBeGreaterThanOrEqual(1);
    // Every failure is counted, logged or not.
    const counted = (await worker.metrics.redisErrors.get()).values.reduce((sum, v) => sum + v.value, 0);
    expect(counted).toBeGreaterThan(during.filter((l) => l.code === "REDIS_ERROR").length);

    await redis.restart();
    await waitFor("REDIS_RECOVERED logged", async () => parsed().some((l) => l.code === "REDIS_RECOVERED"), 15_000);
    await parseQueue.add(PARSE_JOB_NAME, { v: 0 } as never);
    await waitFor(
      "the job after the restart dead-lettered",
      async () =>
        (await deadQueue.getJobs(["waiting"])).some((letter) => letter.data.code === "JOB_VERSION_UNSUPPORTED"),
      15_000,
    );
    // The one error-level line is the job's dead letter (its payload's version is unknown), nothing of the outage.
    expect(parsed().filter((l) => l.level >= ERROR && l.code !== "JOB_VERSION_UNSUPPORTED")).toEqual([]);
    const recovered = parsed().filter((l) => l.code === "REDIS_RECOVERED");
    expect(recovered.length).toBe(1);
  } finally {
    await worker.close();
    await Promise.all([parseQueue.close(), deadQueue.close()]);
    admin.disconnect();
  }
}, 60_000);

it("Redis being away is told apart from the Worker's other errors", () => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });
  const away = [
    withCode("connect ECONNREFUSED 127.0.0.1:6379", "ECONNREFUSED"),
    withCode("read ECONNRESET", "ECONNRESET"),
    withCode("connect ETIMEDOUT", "ETIMEDOUT"),
    withCode("write EPIPE", "EPIPE"),
    withCode("getaddrinfo ENOTFOUND redis", "ENOTFOUND"),
    withCode("getaddrinfo EAI_AGAIN redis", "EAI_AGAIN"),
    // Node's connect to a name with several addresses: the code of its attempts, no message.
    Object.assign(new AggregateError([], ""), { code: "ECONNREFUSED" }),
    new Error("Connection is closed."),
    new Error("LOADING Redis is loading the dataset in memory"),
  ];
  const other = [
    new Error("READONLY You can't write against a read only replica."),
    new Error("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    new Error("OOM command not allowed when used memory > 'maxmemory'."),
    new Error("ERR Error running script (call to f_1234): @user_script:1: loading failed"),
    withCode("Missing lock for job 1. moveToFinished", "-2"),
  ];
  expect(away.filter((e) => !isRedisUnavailable(e)).map((e) => e.message)).toEqual([]);
  expect(other.filter((e) => isRedisUnavailable(e)).map((e) => e.message)).toEqual([]);
});
