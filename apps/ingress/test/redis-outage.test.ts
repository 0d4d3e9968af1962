import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { createRedisConnection } from "@wpn/queue";
import { createTestMerchant, TEST_REDIS_URL, TestRedisServer } from "@wpn/testing";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MerchantRecord } from "../src/merchants/registry.ts";
import { createIngressFixture, type IngressFixture, post, signedV3, V3_QUEUE_UNAVAILABLE } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

const ENQUEUE_TIMEOUT_MS = 400;

let redis: TestRedisServer;
let f: IngressFixture;

beforeAll(async () => {
  redis = await TestRedisServer.start();
  f = await createIngressFixture({
    label: "ingress-outage",
    env: { REDIS_URL: redis.url, INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS) },
    app: { sampleIntervalMs: 100 },
  });
});
afterAll(async () => {
  await f?.close();
  await redis?.kill();
});

const QUEUE_TIMEOUT = JSON.stringify({
  code: "FAIL",
  message: "QUEUE_TIMEOUT: queue did not confirm in time, please resend",
});

/** Starts `server` on a free port of 127.0.0.1 and answers the port. */
async function listenOnFreePort(server: Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("server has no port");
  return address.port;
}

describe("Redis outages", () => {
  it("answers 503 within the bound while Redis is down, and enqueues the resend once it is back", async () => {
    const before = signedV3(f.merchant);
    expect((await post(f.app, "/notify/v3", before)).statusCode).toBe(204);

    await redis.kill();
    const n = signedV3(f.merchant);
    // Right after the kill the connection may not have noticed yet: the answer must still be a bounded 503.
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const response = await post(f.app, "/notify/v3", n);
      const elapsed = performance.now() - started;
      expect(response.statusCode).toBe(503);
      expect([V3_QUEUE_UNAVAILABLE, QUEUE_TIMEOUT]).toContain(response.body);
      expect(elapsed).toBeLessThan(ENQUEUE_TIMEOUT_MS + 1_000);
    }
    await f.app.ingress.sampler.sample();
    const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({ status: "not_ready", redis: "down" });

    await redis.restart();
    if (f.redis.status !== "ready") await once(f.redis, "ready");
    // 'ready' starts a sample of the new connection, and until it is answered the intake refuses (by design: nothing
    // vouches yet for the server reached). WeChat's resend comes seconds later; here, wait for that sample.
    await f.app.ingress.sampler.sample();
    // WeChat resends the notification that got 503: now it is enqueued (nothing was lost).
    const resend = await post(f.app, "/notify/v3", n);
    expect(resend.statusCode).toBe(204);
    expect(await f.queue.getJob(n.jobId)).toBeDefined();
    await f.app.ingress.sampler.sample();
    expect((await f.app.inject({ method: "GET", url: "/health/ready" })).statusCode).toBe(200);
  });

  it("answers 503 QUEUE_TIMEOUT when Redis hangs, never 2xx; the late job is not doubled by the resend", async () => {
    const n = signedV3(f.merchant);
    // CLIENT PAUSE holds every client's commands server-side: a Redis that is up but does not answer (for
    // longer than the bound below, so an answer after the pause cannot pass for the timeout).
    await f.admin.client("PAUSE", 3_000, "ALL");
    const started = performance.now();
    const response = await post(f.app, "/notify/v3", n);
    const elapsed = performance.now() - started;
    expect(response.statusCode).toBe(503);
    expect(response.body).toBe(QUEUE_TIMEOUT);
    expect(elapsed).toBeGreaterThanOrEqual(ENQUEUE_TIMEOUT_MS - 5);
    expect(elapsed).toBeLessThan(ENQUEUE_TIMEOUT_MS + 1_000);

    // After the pause the held add completes; WeChat's resend must then be answered without a second job.
    await new Promise((r) => setTimeout(r, 3_200));
    const before = await f.jobsEverAdded();
    const resend = await post(f.app, "/notify/v3", n);
    expect(resend.statusCode).toBe(204);
    expect(await f.jobsEverAdded()).toBe(before);
    expect(await f.queue.getJob(n.jobId)).toBeDefined();
  });

  it("a request's waits add up to at most 4.5 s: a slow merchant lookup shortens its enqueue bound", async () => {
    // The enqueue bound near its ceiling (4.4 s) after a ~0.9 s merchant-table lookup answered after ~5.3 s, past
    // WeChat's 5 s.
    const second = createTestMerchant({ mchid: "1900000666", appid: "wx0000000000000666" });
    const row: MerchantRecord = {
      mchid: second.mchid,
      appid: second.appid,
      apiV2Key: null,
      publicKeyId: second.publicKeyId,
      publicKeyPem: readFileSync(second.publicKeyPath, "utf8"),
      certificates: [],
      download: null,
    };
    let loads = 0;
    const slow = await createIngressFixture({
      label: "ingress-budget",
      merchant: f.merchant,
      env: { REDIS_URL: redis.url, INGRESS_ENQUEUE_TIMEOUT_MS: "4400" },
      // Empty at start; the on-demand reload for the new merchant takes 0.9 s.
      source: {
        load: () =>
          loads++ === 0 ? Promise.resolve([]) : new Promise((resolve) => setTimeout(() => resolve([row]), 900)),
      },
    });
    try {
      await slow.admin.client("PAUSE", 6_000, "WRITE");
      const started = performance.now();
      const response = await post(slow.app, `/notify/v3/${second.mchid}`, signedV3(second));
      const elapsed = performance.now() - started;
      expect(response.statusCode).toBe(503);
      expect(response.body).toBe(QUEUE_TIMEOUT);
      expect(elapsed).toBeGreaterThanOrEqual(4_300);
      expect(elapsed).toBeLessThan(5_000);
    } finally {
      await slow.admin.client("UNPAUSE");
      await slow.close();
    }
  });

  it("a connection that stops answering without failing: not ready within 3 samples, reopened, then accepting again", async () => {
    // A TCP proxy in front of the local Redis that can silence the ingress's producer connection (both directions
    // dropped, sockets left open: a network partition or a failover without a reset); new connections pass, and
    // so do the test's own (it knows the producer by the name it gives itself, `wechatpay-notify:producer`).
    const testRedis = new URL(TEST_REDIS_URL);
    const silenced = new Set<Socket>();
    const producers = new Set<Socket>();
    const proxy: Server = createServer((client) => {
      const upstream = connect(Number(testRedis.port || 6379), testRedis.hostname);
      client.on("data", (d: Buffer) => {
        if (d.includes("wechatpay-notify:producer")) producers.add(client);
        if (!silenced.has(client)) upstream.write(d);
      });
      upstream.on("data", (d) => silenced.has(client) || client.write(d));
      for (const socket of [client, upstream]) socket.on("error", () => undefined);
      client.on("close", () => {
        producers.delete(client);
        upstream.destroy();
      });
      upstream.on("close", () => client.destroy());
    });
    const proxyPort = await listenOnFreePort(proxy);
    const g = await createIngressFixture({
      label: "ingress-silent",
      env: { REDIS_URL: `redis://127.0.0.1:${proxyPort}`, INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS) },
      app: { sampleIntervalMs: 100, redisReopenAfterMs: 3_000 },
    });
    const ready = async () => (await g.app.inject({ method: "GET", url: "/health/ready" })).statusCode;
    try {
      expect(await pollUntil(async () => (await ready()) === 200, 2_000)).toBe(true);
      expect((await post(g.app, "/notify/v3", signedV3(g.merchant))).statusCode).toBe(204);

      expect(producers.size).toBe(1);
      for (const socket of producers) silenced.add(socket);
      const silencedAt = performance.now();
      const n = signedV3(g.merchant);
      const response = await post(g.app, "/notify/v3", n);
      expect(response.statusCode).toBe(503);
      expect(response.body).toBe(QUEUE_TIMEOUT);
      expect(g.redis.status).toBe("ready");
      // Unanswered for 3 sampling intervals (300 ms) → not ready, although the connection still says "ready" and
      // long before the connection is reopened (3 s).
      expect(await pollUntil(async () => (await ready()) === 503, 2_500)).toBe(true);
      expect(performance.now() - silencedAt).toBeLessThan(2_500);

      // Reopened after 3 s on a new connection: ready again, and WeChat's resend is enqueued.
      expect(await pollUntil(async () => (await ready()) === 200, 10_000)).toBe(true);
      expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(204);
      expect(await g.queue.getJob(n.jobId)).toBeDefined();
    } finally {
      // Silenced sockets first: a producer still waiting on one would hold the app's close.
      for (const socket of silenced) socket.destroy();
      await g.close();
      proxy.close();
    }
  });

  /**
   * A demoted primary and its successor behind one address: a TCP proxy that leads each new connection to
   * `target`, while connections made before stay where they are (a demoted Redis keeps its clients).
   */
  async function failoverPair() {
    const demoted = await TestRedisServer.start();
    const promoted = await TestRedisServer.start();
    const pair = { demoted, promoted, target: demoted.port, port: 0 };
    const proxy: Server = createServer((client) => {
      const upstream = connect(pair.target, "127.0.0.1");
      client.pipe(upstream);
      upstream.pipe(client);
      for (const socket of [client, upstream]) socket.on("error", () => undefined);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    pair.port = await listenOnFreePort(proxy);
    const admin = createRedisConnection(demoted.url, "admin");
    return {
      ...pair,
      switchTo(port: number) {
        pair.target = port;
      },
      /** The failover: the old primary becomes a replica of the new one. */
      demote: () => admin.call("REPLICAOF", "127.0.0.1", String(promoted.port)),
      async jobOnPromoted(key: string): Promise<number> {
        const onPromoted = createRedisConnection(promoted.url, "admin");
        try {
          return await onPromoted.exists(key);
        } finally {
          onPromoted.disconnect();
        }
      },
      async close() {
        admin.disconnect();
        proxy.close();
        await demoted.kill();
        await promoted.kill();
      },
    };
  }

  it("a failover that leaves the connection open to a demoted primary: the next write reconnects to the new primary", async () => {
    const pair = await failoverPair();
    const g = await createIngressFixture({
      label: "ingress-failover",
      env: { REDIS_URL: `redis://127.0.0.1:${pair.port}`, INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS) },
      // The sampler's first sample only (it samples at start): a later one could meet the demoted server before the
      // request below and reconnect first, and the request would then never meet it. Readiness across a failover is the
      // next tests' subject.
      app: { sampleIntervalMs: 60_000 },
    });
    const ready = async () => (await g.app.inject({ method: "GET", url: "/health/ready" })).statusCode;
    try {
      expect(await pollUntil(async () => (await ready()) === 200, 2_000)).toBe(true);
      await pair.demote();
      pair.switchTo(pair.promoted.port);
      const n = signedV3(g.merchant);
      // The first attempt meets the demoted server (READONLY); the reconnect it causes reaches the new primary.
      expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(503);
      expect(await pollUntil(async () => (await post(g.app, "/notify/v3", n)).statusCode === 204, 5_000)).toBe(true);
      expect(await pair.jobOnPromoted(`${g.prefix}:notify.parse:${n.jobId}`)).toBe(1);
    } finally {
      await g.close();
      await pair.close();
    }
  });

  it("a failover whose address moves only later, with no traffic meanwhile: the sampler reopens the replica's connection", async () => {
    const pair = await failoverPair();
    const g = await createIngressFixture({
      label: "ingress-failover-late",
      env: { REDIS_URL: `redis://127.0.0.1:${pair.port}`, INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS) },
      app: { sampleIntervalMs: 100, redisReopenAfterMs: 500 },
    });
    const ready = async () => (await g.app.inject({ method: "GET", url: "/health/ready" })).statusCode;
    try {
      expect(await pollUntil(async () => (await ready()) === 200, 2_000)).toBe(true);
      await pair.demote();
      const n = signedV3(g.merchant);
      // READONLY, and the reconnect it causes still reaches the demoted server: not ready, so no more traffic.
      expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(503);
      expect(await pollUntil(async () => (await ready()) === 503, 5_000)).toBe(true);
      // Reconnected (to the replica again) and seen as one: only a reopen can reach the new primary now.
      expect(await pollUntil(() => g.redis.status === "ready", 5_000)).toBe(true);
      await g.app.ingress.sampler.sample();
      expect(await ready()).toBe(503);
      pair.switchTo(pair.promoted.port);
      // No notification comes to meet READONLY; the sampler finds the new primary (its write probe's READONLY
      // reconnects the connection, and so would its reopen).
      expect(await pollUntil(async () => (await ready()) === 200, 5_000)).toBe(true);
      expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(204);
      expect(await pair.jobOnPromoted(`${g.prefix}:notify.parse:${n.jobId}`)).toBe(1);
    } finally {
      await g.close();
      await pair.close();
    }
  });

  it("a demoted primary that keeps the address: not ready while it is a replica (ROLE), ready again once promoted", async () => {
    const other = await TestRedisServer.start();
    const admin = createRedisConnection(redis.url, "admin");
    try {
      await admin.call("REPLICAOF", "127.0.0.1", String(other.port));
      const synced = async () => {
        const role = (await admin.call("ROLE")) as unknown[];
        return role[0] === "slave" && role[3] === "connected";
      };
      expect(await pollUntil(synced, 10_000)).toBe(true);
      const n = signedV3(f.merchant);
      expect((await post(f.app, "/notify/v3", n)).statusCode).toBe(503);
      expect(await pollUntil(() => f.redis.status === "ready", 5_000)).toBe(true);
      await f.app.ingress.sampler.sample();
      const notReady = await f.app.inject({ method: "GET", url: "/health/ready" });
      expect(notReady.statusCode).toBe(503);
      expect(notReady.json()).toMatchObject({ redis: "down" });

      await admin.call("REPLICAOF", "NO", "ONE");
      expect(
        await pollUntil(async () => {
          await f.app.ingress.sampler.sample();
          return (await f.app.inject({ method: "GET", url: "/health/ready" })).statusCode === 200;
        }, 5_000),
      ).toBe(true);
      expect(await pollUntil(async () => (await post(f.app, "/notify/v3", n)).statusCode === 204, 5_000)).toBe(true);
    } finally {
      await admin.call("REPLICAOF", "NO", "ONE");
      admin.disconnect();
      await other.kill();
    }
  });

  it("a demoted primary that takes writes (replica-read-only no): notifications 503, never 2xx for a replica's copy", async () => {
    const other = await TestRedisServer.start();
    const admin = createRedisConnection(redis.url, "admin");
    try {
      await admin.call("REPLICAOF", "127.0.0.1", String(other.port));
      await admin.config("SET", "replica-read-only", "no");
      const synced = async () => {
        const role = (await admin.call("ROLE")) as unknown[];
        return role[0] === "slave" && role[3] === "connected";
      };
      expect(await pollUntil(synced, 10_000)).toBe(true);
      await f.app.ingress.sampler.sample();
      const n = signedV3(f.merchant);
      const refused = await post(f.app, "/notify/v3", n);
      expect({ status: refused.statusCode, body: refused.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
      expect(await f.queue.getJob(n.jobId)).toBeUndefined();
    } finally {
      await admin.call("REPLICAOF", "NO", "ONE");
      await admin.config("SET", "replica-read-only", "yes");
      admin.disconnect();
      await other.kill();
    }
  });

  it("a Redis user without ROLE (no @admin, which BullMQ does not need) is still ready", async () => {
    const admin = createRedisConnection(redis.url, "admin");
    await admin.call("ACL", "SETUSER", "wpn-ingress", "on", ">wpn-secret", "~*", "&*", "+@all", "-@admin");
    const g = await createIngressFixture({
      label: "ingress-acl",
      merchant: f.merchant,
      env: { REDIS_URL: `redis://wpn-ingress:wpn-secret@127.0.0.1:${redis.port}` },
      app: { sampleIntervalMs: 100 },
    });
    try {
      await g.app.ingress.sampler.sample();
      const ready = await g.app.inject({ method: "GET", url: "/health/ready" });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toMatchObject({ redis: "up", queue: { waiting: 0 } });
      expect((await post(g.app, "/notify/v3", signedV3(f.merchant))).statusCode).toBe(204);
    } finally {
      await g.close();
      await admin.call("ACL", "DELUSER", "wpn-ingress");
      admin.disconnect();
    }
  });

  it("a Redis that may evict jobs (allkeys-* with maxmemory) is not ready; volatile-* and no maxmemory are", async () => {
    const admin = createRedisConnection(redis.url, "admin");
    const lines: string[] = [];
    const g = await createIngressFixture({
      label: "ingress-eviction",
      merchant: f.merchant,
      env: { REDIS_URL: redis.url },
      app: { sampleIntervalMs: 60_000, logger: pino({ level: "info" }, { write: (line) => void lines.push(line) }) },
    });
    const readiness = async (policy: string, maxmemory: string) => {
      await admin.config("SET", "maxmemory-policy", policy, "maxmemory", maxmemory);
      await g.app.ingress.sampler.sample();
      const ready = await g.app.inject({ method: "GET", url: "/health/ready" });
      const metrics = await g.app.inject({ method: "GET", url: "/metrics" });
      const evictsJobs = /^wpn_ingress_redis_evicts_jobs (\d)$/m.exec(metrics.body)?.[1];
      return { status: ready.statusCode, eviction: ready.json().redisEviction, evictsJobs };
    };
    try {
      expect(await readiness("noeviction", "1gb")).toEqual({ status: 200, eviction: "noeviction", evictsJobs: "0" });
      expect(await readiness("allkeys-lru", "1gb")).toEqual({ status: 503, eviction: "allkeys-lru", evictsJobs: "1" });
      expect(await readiness("allkeys-random", "0")).toEqual({
        status: 200,
        eviction: "allkeys-random (no maxmemory)",
        evictsJobs: "0",
      });
      // Only the dedupe receipts have a TTL: reported in the log, still ready.
      expect(await readiness("volatile-lru", "1gb")).toEqual({
        status: 200,
        eviction: "volatile-lru",
        evictsJobs: "0",
      });
      const logged = lines.map((line) => JSON.parse(line)).filter((entry) => entry.code === "REDIS_EVICTION_POLICY");
      expect(logged.map((entry) => [entry.policy, entry.evictsJobs, entry.level])).toEqual([
        ["allkeys-lru", true, 50],
        ["volatile-lru", false, 50],
      ]);
      expect(await readiness("noeviction", "0")).toEqual({
        status: 200,
        eviction: "noeviction (no maxmemory)",
        evictsJobs: "0",
      });
    } finally {
      await admin.config("SET", "maxmemory-policy", "noeviction", "maxmemory", "0");
      await g.close();
      admin.disconnect();
    }
  });

  it("a Redis without AOF is reported (REDIS_NO_AOF, wpn_ingress_redis_aof_enabled 0) and still takes notifications", async () => {
    const admin = createRedisConnection(redis.url, "admin");
    const lines: string[] = [];
    const g = await createIngressFixture({
      label: "ingress-aof",
      merchant: f.merchant,
      env: { REDIS_URL: redis.url },
      app: { sampleIntervalMs: 60_000, logger: pino({ level: "info" }, { write: (line) => void lines.push(line) }) },
    });
    const sampled = async (appendonly: "yes" | "no") => {
      await admin.config("SET", "appendonly", appendonly);
      await g.app.ingress.sampler.sample();
      const ready = await g.app.inject({ method: "GET", url: "/health/ready" });
      const metrics = await g.app.inject({ method: "GET", url: "/metrics" });
      return { status: ready.statusCode, aof: /^wpn_ingress_redis_aof_enabled (-?\d)$/m.exec(metrics.body)?.[1] };
    };
    try {
      // The server runs without persistence (TestRedisServer): a restart would lose every job and receipt it holds.
      expect(await sampled("no")).toEqual({ status: 200, aof: "0" });
      expect((await post(g.app, "/notify/v3", signedV3(f.merchant))).statusCode).toBe(204);
      expect(await sampled("yes")).toEqual({ status: 200, aof: "1" });
      expect(await sampled("no")).toEqual({ status: 200, aof: "0" });
      const logged = lines.map((line) => JSON.parse(line)).filter((entry) => entry.code === "REDIS_NO_AOF");
      // At the first sample and again when it is turned off: not once a second.
      expect(logged.map((entry) => entry.level)).toEqual([50, 50]);
    } finally {
      await admin.config("SET", "appendonly", "no");
      await g.close();
      admin.disconnect();
    }
  });

  it("a Redis that may evict jobs: notifications are answered 503 QUEUE_UNAVAILABLE, not 2xx, until it may not", async () => {
    const admin = createRedisConnection(redis.url, "admin");
    const g = await createIngressFixture({
      label: "ingress-eviction-503",
      merchant: f.merchant,
      env: { REDIS_URL: redis.url },
      app: { sampleIntervalMs: 60_000 },
    });
    try {
      await admin.config("SET", "maxmemory-policy", "allkeys-lru", "maxmemory", "1gb");
      await g.app.ingress.sampler.sample();
      const n = signedV3(g.merchant);
      const refused = await post(g.app, "/notify/v3", n);
      expect({ status: refused.statusCode, body: refused.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
      expect(await g.queue.getJob(n.jobId)).toBeUndefined();

      await admin.config("SET", "maxmemory-policy", "noeviction", "maxmemory", "0");
      await g.app.ingress.sampler.sample();
      expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(204);
      expect(await g.queue.getJob(n.jobId)).toBeDefined();
    } finally {
      await admin.config("SET", "maxmemory-policy", "noeviction", "maxmemory", "0");
      await g.close();
      admin.disconnect();
    }
  });
});
