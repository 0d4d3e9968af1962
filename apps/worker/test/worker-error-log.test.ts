import { createRedisConnection } from "@wpn/queue";
import { TestRedisServer } from "@wpn/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// A Redis that answers but refuses the Workers' writes — `maxmemory` reached under noeviction (OOM), a demoted primary
// (READONLY) — makes each BullMQ Worker's main loop fail and retry many times a second. Each failure is an alert
// (WORKER_ERROR, error level: waiting does not fix it), but one line per failure flooded the log for as long as it
// lasted (measured: ~900 lines in a 15 s OOM, tens a second).
let world: World;
let redis: TestRedisServer;
beforeAll(async () => {
  world = await createWorld("wworkererr");
  redis = await TestRedisServer.start();
});
afterAll(async () => {
  await redis?.kill();
  await world?.cleanup();
});

/** Pino's error level. */
const ERROR = 50;

it("a Redis refusing writes (OOM) is logged WORKER_ERROR a bounded number of times, every failure counted", async () => {
  const { logger, lines } = capturedLog();
  const admin = createRedisConnection(redis.url, "admin");
  admin.on("error", () => undefined);
  const worker = await startWorker(world.config({ REDIS_URL: redis.url }), { logger, healthPort: 0 });
  const parsed = () =>
    lines.map((l) => JSON.parse(l) as { level: number; code?: string; queue?: string; suppressed?: number });
  try {
    // Any write now exceeds the limit: every script of the Workers' loops is refused with OOM.
    await admin.config("SET", "maxmemory", "1");
    const started = Date.now();
    const counted = async () =>
      (await worker.metrics.errors.get()).values
        .filter((v) => v.labels.code === "WORKER_ERROR")
        .reduce((sum, v) => sum + v.value, 0);
    // The log's bound is measured over at least 6 s of failures, and until more failures were counted than logged:
    // how fast they come depends on the machine (a slow one may see one per queue in 6 s), not on the bound.
    const { errors, failures } = await waitFor(
      "more WORKER_ERROR failures counted than logged, after 6 s",
      async () => {
        const logged = parsed().filter((l) => l.code === "WORKER_ERROR");
        const total = await counted();
        return Date.now() - started >= 6_000 && total > logged.length ? { errors: logged, failures: total } : null;
      },
      40_000,
      100,
    );
    // The first of each queue's run of one error at once, the rest counted.
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors.every((l) => l.level === ERROR)).toBe(true);
    expect(errors.length).toBeLessThanOrEqual(2);
    expect(failures).toBeGreaterThan(errors.length);
  } finally {
    await admin.config("SET", "maxmemory", "0");
    await worker.close();
    admin.disconnect();
  }
}, 60_000);
