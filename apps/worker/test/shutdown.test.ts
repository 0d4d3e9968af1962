import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, orderOf, seedOrder, seedSkus, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// WORKER_SHUTDOWN_TIMEOUT_MS bounds a shutdown even when a job cannot finish: here its order row is locked by
// another transaction (a long checkout or admin transaction), and the statement waits for it.
let world: World;
let redis: Redis;
afterAll(async () => {
  redis?.disconnect();
  await world?.cleanup();
});

it("close() returns within about WORKER_SHUTDOWN_TIMEOUT_MS even when a job is stuck; another worker applies it once", async () => {
  world = await createWorld("rshut");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  await seedSkus(world.prisma, { A: 100 });
  const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
  const { logger, lines } = capturedLog();
  // With PUBLISH_EVENTS, so that the PublishOverflow relay runs and must stop too.
  const worker = await startWorker(world.config({ WORKER_SHUTDOWN_TIMEOUT_MS: "1000", PUBLISH_EVENTS: "true" }), {
    logger,
    healthPort: 0,
  });
  const parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  const applyQueue = createQueue(QueueName.Apply, redis, world.prefix);

  // Another transaction holds the order row (FOR UPDATE) until released below.
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => {
    locked = r;
  });
  const tx = world.prisma.$transaction(
    async (t) => {
      await t.$queryRaw`SELECT id FROM "Order" WHERE "outTradeNo" = ${otn} FOR UPDATE`;
      locked();
      await held;
    },
    { timeout: 60_000, maxWait: 10_000 },
  );
  await isLocked;

  const job = v3Payment(world, { outTradeNo: otn, transactionId: "4200009999" });
  await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
  await waitFor("apply job active", async () => (await applyQueue.getActiveCount()) === 1, 15_000);
  await new Promise((r) => setTimeout(r, 500));

  const started = Date.now();
  await worker.close();
  const took = Date.now() - started;
  release();
  await tx;
  const timeout = lines
    .map((l) => JSON.parse(l) as { code?: string; msg: string })
    .find((l) => l.code === "SHUTDOWN_TIMEOUT");
  expect(timeout).toMatchObject({ runningJobs: 1, msg: "abandoning running jobs" });
  // 1 s of grace, then each closing step at most 1 s (PostgreSQL's is the one still in a statement).
  expect(took).toBeLessThan(4_000);
  // The relay stopped with the rest: a pass every second on the closed pool would fail from now on.
  await new Promise((r) => setTimeout(r, 1_500));
  expect(lines.filter((l) => l.includes('"PUBLISH_RELAY_FAILED"'))).toEqual([]);

  // The abandoned job's lock lapses; a new worker re-runs it, and the payment is applied once.
  const next = await startWorker(world.config({ WORKER_LOCK_DURATION_MS: "1000", WORKER_STALLED_INTERVAL_MS: "500" }), {
    logger: pino({ level: "silent" }),
    healthPort: 0,
  });
  try {
    await waitFor("payment applied", async () => (await orderOf(world.prisma, otn)).status === "SUCCESS", 45_000);
    expect((await orderOf(world.prisma, otn)).movements).toHaveLength(1);
  } finally {
    await next.close();
    await parseQueue.close();
    await applyQueue.close();
  }
}, 90_000);
