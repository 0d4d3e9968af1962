import { createRedisConnection } from "@wpn/queue";
import { TestRedisServer } from "@wpn/testing";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

// A Redis that answers reads but refuses (or holds) writes: readiness must not stay 200 while every notification gets
// 503. The server is the test's own: CLIENT PAUSE, maxmemory and REPLICAOF act on the whole server.

const ENQUEUE_TIMEOUT_MS = 400;
const SAMPLE_INTERVAL_MS = 100;

let redis: TestRedisServer;
let f: IngressFixture;
let admin: Redis;

beforeAll(async () => {
  redis = await TestRedisServer.start();
  f = await createIngressFixture({
    label: "ingress-writable",
    env: { REDIS_URL: redis.url, INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS) },
    app: { sampleIntervalMs: SAMPLE_INTERVAL_MS },
  });
  admin = createRedisConnection(redis.url, "admin");
});
afterAll(async () => {
  admin?.disconnect();
  await f?.close();
  await redis?.kill();
});

async function readiness(g: IngressFixture): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await g.app.inject({ method: "GET", url: "/health/ready" });
  return { status: response.statusCode, body: response.json() };
}

/**
 * Polls readiness until it answers `status` and a body with the fields of `body`; the last answer, whatever it was.
 * The body's fields are waited for, not only the status: a sample's answers are recorded as they come, so between its
 * write probe's reply and its INFO's, readiness can already say 503 OOM with the previous sample's eviction policy
 * (measured under load: 503 with redisWrite "OOM" but redisEviction "noeviction (no maxmemory)").
 */
async function readinessBecomes(
  g: IngressFixture,
  status: number,
  timeoutMs: number,
  body: Record<string, unknown> = {},
) {
  let last = await readiness(g);
  await pollUntil(async () => {
    last = await readiness(g);
    return last.status === status && Object.entries(body).every(([name, value]) => last.body[name] === value);
  }, timeoutMs);
  return last;
}

describe("readiness follows whether this process can write its jobs", () => {
  it("CLIENT PAUSE WRITE: not ready (TIMEOUT) while writes are held, ready again once they pass", async () => {
    expect((await readinessBecomes(f, 200, 2_000)).status).toBe(200);
    const pauseMs = 2_000;
    await admin.client("PAUSE", pauseMs, "WRITE");
    const pausedAt = performance.now();
    // Under Redis 7.0 BullMQ's count script is held too, so the sample also goes unanswered (`redis: "down"` after 3
    // intervals); the write probe names the cause once the enqueue bound has passed.
    const held = await readinessBecomes(f, 503, pauseMs - 200, { redisWrite: "TIMEOUT" });
    expect(performance.now() - pausedAt).toBeLessThan(pauseMs);
    expect(held.status).toBe(503);
    expect(held.body).toMatchObject({ status: "not_ready", redisWrite: "TIMEOUT" });

    const back = await readinessBecomes(f, 200, pauseMs + 3_000);
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ status: "ready", redis: "up", redisWrite: "ok" });
    expect((await post(f.app, "/notify/v3", signedV3(f.merchant))).statusCode).toBe(204);
  });

  it("maxmemory reached under noeviction (OOM): not ready, ready again once memory is freed", async () => {
    expect((await readinessBecomes(f, 200, 2_000)).status).toBe(200);
    try {
      await admin.config("SET", "maxmemory-policy", "noeviction", "maxmemory", "1");
      const n = signedV3(f.merchant);
      expect((await post(f.app, "/notify/v3", n)).statusCode).toBe(503);
      const full = await readinessBecomes(f, 503, 2_000, { redisWrite: "OOM", redisEviction: "noeviction" });
      expect(full.status).toBe(503);
      expect(full.body).toMatchObject({ status: "not_ready", redisWrite: "OOM", redisEviction: "noeviction" });

      await admin.config("SET", "maxmemory", "0");
      const back = await readinessBecomes(f, 200, 2_000);
      expect(back.status).toBe(200);
      expect(back.body).toMatchObject({ redisWrite: "ok" });
      expect((await post(f.app, "/notify/v3", n)).statusCode).toBe(204);
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
  });

  it("a demoted primary (READONLY) for a Redis user that may not ask ROLE: not ready, ready again once promoted", async () => {
    await admin.call("ACL", "SETUSER", "wpn-ingress", "on", ">wpn-secret", "~*", "&*", "+@all", "-@admin");
    const g = await createIngressFixture({
      label: "ingress-writable-acl",
      merchant: f.merchant,
      env: {
        REDIS_URL: `redis://wpn-ingress:wpn-secret@127.0.0.1:${redis.port}`,
        INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS),
      },
      app: { sampleIntervalMs: SAMPLE_INTERVAL_MS },
    });
    const primary = await TestRedisServer.start();
    try {
      expect((await readinessBecomes(g, 200, 2_000)).status).toBe(200);
      // A replica refuses writes from the moment it is one, before its first sync.
      await admin.call("REPLICAOF", "127.0.0.1", String(primary.port));
      const demoted = await readinessBecomes(g, 503, 3_000, { redisWrite: "READONLY" });
      expect(demoted.status).toBe(503);
      expect(demoted.body).toMatchObject({ status: "not_ready", redisWrite: "READONLY" });

      await admin.call("REPLICAOF", "NO", "ONE");
      const back = await readinessBecomes(g, 200, 5_000);
      expect(back.status).toBe(200);
      expect(back.body).toMatchObject({ redisWrite: "ok" });
      expect(
        await pollUntil(async () => (await post(g.app, "/notify/v3", signedV3(f.merchant))).statusCode === 204, 3_000),
      ).toBe(true);
    } finally {
      await admin.call("REPLICAOF", "NO", "ONE");
      await g.close();
      await admin.call("ACL", "DELUSER", "wpn-ingress");
      await primary.kill();
    }
  });

  it("/health/live stays 200 whatever Redis refuses", async () => {
    expect((await readinessBecomes(f, 200, 5_000)).status).toBe(200);
    try {
      await admin.config("SET", "maxmemory", "1");
      expect((await readinessBecomes(f, 503, 2_000)).status).toBe(503);
      expect((await f.app.inject({ method: "GET", url: "/health/live" })).statusCode).toBe(200);
    } finally {
      await admin.config("SET", "maxmemory", "0");
    }
  });
});
