import { TestRedisServer } from "@wpn/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, type World } from "./support/fixtures.ts";

// A shutdown during a Redis outage: BullMQ's Worker.close() waits for Redis, so the grace runs out although no job
// runs. The SHUTDOWN_TIMEOUT line must say what was cut, not that jobs were abandoned (measured with the real process:
// SIGTERM with Redis down and an idle queue, 10 s, "jobs still running or dead letters still being written").
let world: World;
let redis: TestRedisServer;
beforeAll(async () => {
  world = await createWorld("wshutredis");
  redis = await TestRedisServer.start();
});
afterAll(async () => {
  await redis?.kill();
  await world?.cleanup();
});

it("a shutdown with Redis down and no job running says no job was abandoned", async () => {
  const { logger, lines } = capturedLog();
  const worker = await startWorker(world.config({ REDIS_URL: redis.url, WORKER_SHUTDOWN_TIMEOUT_MS: "1000" }), {
    logger,
    healthPort: 0,
  });
  await redis.kill();
  await new Promise((r) => setTimeout(r, 500));
  await worker.close();
  const timeout = lines
    .map((l) => JSON.parse(l) as { code?: string; msg: string; err?: string; runningJobs?: number })
    .find((l) => l.code === "SHUTDOWN_TIMEOUT");
  expect(timeout).toMatchObject({ runningJobs: 0 });
  expect(`${timeout?.msg} ${timeout?.err}`).not.toMatch(/abandoning running jobs|jobs still running/);
}, 30_000);
