import { once } from "node:events";
import { createServer } from "node:net";
import { createRedisConnection } from "@wpn/queue";
import { TestRedisServer } from "@wpn/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { createWorld, quietLog, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// startWorker's health server could not listen (main.ts's wait for PostgreSQL held the port until just before, and
// another process took it meanwhile): main.ts reports LISTEN_FAILED and exits 78 (test/listen.test.ts). By then
// startWorker had opened Redis — its connection and BullMQ's — and PostgreSQL; it must close them before it throws.
let world: World;
let redis: TestRedisServer;
beforeAll(async () => {
  world = await createWorld("whealthlisten");
  redis = await TestRedisServer.start();
});
afterAll(async () => {
  await redis?.kill();
  await world?.cleanup();
});

it("a health port in use: startWorker rejects with EADDRINUSE, leaving no Redis connection open", async () => {
  const holder = createServer().listen(0, "127.0.0.1");
  await once(holder, "listening");
  const port = (holder.address() as { port: number }).port;
  const admin = createRedisConnection(redis.url, "admin");
  try {
    const config = world.config({ REDIS_URL: redis.url, HOST: "127.0.0.1" });
    await expect(startWorker(config, { logger: quietLog, healthPort: port })).rejects.toMatchObject({
      code: "EADDRINUSE",
    });
    // Only this test's own connection is left.
    await waitFor(
      "the worker's Redis connections to be closed",
      async () => ((await admin.client("LIST")) as string).trim().split("\n").length === 1,
      5_000,
    );
  } finally {
    admin.disconnect();
    holder.close();
  }
}, 30_000);
