import { createRedisConnection } from "@wpn/queue";
import { TestRedisServer } from "@wpn/testing";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { createWorld, quietLog, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// A Redis that answers reads but refuses writes (maxmemory reached under noeviction, a demoted primary): the worker
// can neither take a job nor record its outcome, so its readiness must not say "ok". The server is the test's own:
// maxmemory and REPLICAOF act on the whole server.

let world: World;
let redis: TestRedisServer;
let admin: Redis;
let worker: WorkerHandle;

beforeAll(async () => {
  world = await createWorld("wwritable");
  redis = await TestRedisServer.start();
  admin = createRedisConnection(redis.url, "admin");
  worker = await startWorker(world.config({ REDIS_URL: redis.url }), { logger: quietLog, healthPort: 0 });
});
afterAll(async () => {
  await worker?.close();
  admin?.disconnect();
  await redis?.kill();
  await world?.cleanup();
});

async function readiness(): Promise<{ status: number; checks: Record<string, string> }> {
  const response = await fetch(`http://127.0.0.1:${worker.healthPort}/health/ready`);
  const body = (await response.json()) as { checks: Record<string, string> };
  return { status: response.status, checks: body.checks };
}

describe("worker readiness follows whether Redis takes its writes", () => {
  it("maxmemory reached under noeviction: not ready naming OOM, ready again once memory is freed", async () => {
    await waitFor("ready", async () => (await readiness()).status === 200);
    try {
      await admin.config("SET", "maxmemory-policy", "noeviction", "maxmemory", "1");
      const full = await readiness();
      expect(full.status).toBe(503);
      expect(full.checks.redis).toMatch(/^OOM /);
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
    expect(await readiness()).toMatchObject({ status: 200, checks: { redis: "ok" } });
  });

  it("a demoted primary (READONLY): not ready, ready again once promoted", async () => {
    const primary = await TestRedisServer.start();
    try {
      await admin.call("REPLICAOF", "127.0.0.1", String(primary.port));
      // A READONLY reply makes the connection reconnect (connection.ts); the probe after it meets READONLY again.
      let demoted = await readiness();
      await waitFor("not ready", async () => {
        demoted = await readiness();
        return demoted.status === 503 && /READONLY/.test(demoted.checks.redis ?? "");
      });
      expect(demoted.checks.redis).toMatch(/READONLY/);
    } finally {
      await admin.call("REPLICAOF", "NO", "ONE");
      await primary.kill();
    }
    await waitFor("ready again", async () => (await readiness()).status === 200);
  });
});
