import { TestRedisServer } from "@wpn/testing";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
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

it("a Redis outage is logged as REDIS_ERROR lines, nothing printed to stderr by the worker's queues", async () => {
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
      "three reconnect attempts reported",
      async () => lines.filter((l) => l.includes('"code":"REDIS_ERROR"')).length >= 3,
      15_000,
    );
    expect(printed).toEqual([]);
  } finally {
    await redis.restart();
    await worker.close();
  }
}, 30_000);
