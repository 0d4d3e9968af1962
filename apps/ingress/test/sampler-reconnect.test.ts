import { TestRedisServer } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture, post, signedV3, V3_QUEUE_UNAVAILABLE } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

// A Redis restarted with another configuration (or a failover that put the address on another server) is met only
// through the producer connection's reconnect: what the queue sampler read before is about the server that is gone.
// The sampling interval is a minute, so only a sample taken because the connection is ready again can read the new
// server within the test; without one, the sample taken before the restart would still be trusted.

let server: TestRedisServer;
let g: IngressFixture;

beforeAll(async () => {
  server = await TestRedisServer.start();
  g = await createIngressFixture({
    label: "ingress-sampler-reconnect",
    env: { REDIS_URL: server.url },
    app: { sampleIntervalMs: 60_000 },
  });
});
afterAll(async () => {
  await g?.close();
  await server?.kill();
});

/** What the ingress says in the same turn as its producer connection's 'ready', before any answer on it. */
interface AtReady {
  unkeptBecause: string | undefined;
  snapshot: { checked: boolean; redisUp: boolean };
  /** `performance.now()`. */
  at: number;
}

/** Restarts the test's Redis with `config`; resolves once it answers and the ingress's connection is ready again. */
async function restartWith(config: Record<string, string>): Promise<AtReady> {
  const ready = new Promise<AtReady>((resolve) =>
    g.redis.once("ready", () => {
      const { checked, redisUp } = g.app.ingress.sampler.snapshot;
      resolve({
        unkeptBecause: g.app.ingress.sampler.unkeptBecause,
        snapshot: { checked, redisUp },
        at: performance.now(),
      });
    }),
  );
  await server.kill();
  await server.restart(config);
  return ready;
}

async function readiness() {
  const ready = await g.app.inject({ method: "GET", url: "/health/ready" });
  const metrics = (await g.app.inject({ method: "GET", url: "/metrics" })).body;
  return {
    status: ready.statusCode,
    redis: ready.json().redis,
    redisEviction: ready.json().redisEviction,
    up: /^wpn_ingress_redis_up (\d)$/m.exec(metrics)?.[1],
    evictsJobs: /^wpn_ingress_redis_evicts_jobs (\d)$/m.exec(metrics)?.[1],
  };
}

describe("a Redis restarted with another configuration", () => {
  it("is not trusted with what was sampled before: 503 until sampled again, at once on reconnect; 204 once it keeps jobs", async () => {
    expect((await post(g.app, "/notify/v3", signedV3(g.merchant))).statusCode).toBe(204);
    expect(await readiness()).toMatchObject({ status: 200, redisEviction: "noeviction (no maxmemory)" });

    // Restarted as a cache: it may evict jobs.
    const cache = await restartWith({ maxmemory: "100mb", "maxmemory-policy": "allkeys-lru" });
    const n = signedV3(g.merchant);
    const refused = await post(g.app, "/notify/v3", n);
    expect({ status: refused.statusCode, body: refused.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
    expect(await g.queue.getJob(n.jobId)).toBeUndefined();
    expect(cache.unkeptBecause).toBe("redis reconnected: its eviction policy and role are not sampled yet");
    expect(cache.snapshot).toEqual({ checked: false, redisUp: false });

    // Sampled because the connection is ready again (the next periodic sample is a minute away).
    expect(await pollUntil(() => g.app.ingress.sampler.snapshot.checked, 2_000)).toBe(true);
    expect(g.app.ingress.sampler.unkeptBecause).toBe("redis may evict jobs (maxmemory-policy allkeys-lru)");
    const still = await post(g.app, "/notify/v3", n);
    expect({ status: still.statusCode, body: still.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
    expect(await g.queue.getJob(n.jobId)).toBeUndefined();
    expect(await readiness()).toEqual({
      status: 503,
      redis: "up",
      redisEviction: "allkeys-lru",
      up: "1",
      evictsJobs: "1",
    });

    // Restarted as it should run: WeChat's resend is taken as soon as the new connection has been sampled.
    const good = await restartWith({});
    expect(good.unkeptBecause).toBe("redis reconnected: its eviction policy and role are not sampled yet");
    expect(good.snapshot).toEqual({ checked: false, redisUp: false });
    expect(await pollUntil(async () => (await post(g.app, "/notify/v3", n)).statusCode === 204, 2_000)).toBe(true);
    // Well within the minute before the next periodic sample.
    expect(performance.now() - good.at).toBeLessThan(1_000);
    expect(await g.queue.getJob(n.jobId)).toBeDefined();
    expect(await readiness()).toEqual({
      status: 200,
      redis: "up",
      redisEviction: "noeviction (no maxmemory)",
      up: "1",
      evictsJobs: "0",
    });
  });
});
