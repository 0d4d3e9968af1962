import { TestRedisServer } from "@wpn/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture, post, signedV3, V3_QUEUE_UNAVAILABLE } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

// A batch written to Redis and unanswered when the producer connection closes is not failed by ioredis: it is
// resent on the next connection (autoResendUnfulfilledCommands), to whatever server that reaches, and answered there.
// Here the server is the same test-owned redis-server, switched to `maxmemory-policy allkeys-lru` while the batch
// waited (a Redis restarted as a cache, met through the reconnect, as in sampler-reconnect.test.ts): `CLIENT PAUSE
// … WRITE` holds the batch's script call, `CONFIG SET` changes the policy, `CLIENT KILL` closes the producer
// connection, and its reconnect (the first attempt, 50 ms later: the server never went away) resends the batch. No
// queue sample has vouched for that connection's server; the periodic one is a minute away.

let server: TestRedisServer;
let g: IngressFixture;

beforeAll(async () => {
  server = await TestRedisServer.start();
  g = await createIngressFixture({
    label: "ingress-batch-reconnect",
    env: { REDIS_URL: server.url },
    // One batch in flight at a time: the second test's notification waits for the first's slot.
    app: { sampleIntervalMs: 60_000, maxInFlightBatches: 1 },
  });
});
beforeEach(async () => {
  // Each test starts on a connection vouched for, whatever the previous one left.
  await g.app.ingress.sampler.sample();
  expect(g.app.ingress.sampler.unkeptBecause).toBeUndefined();
});
afterEach(async () => {
  await g.admin.call("CLIENT", "UNPAUSE");
  await setPolicy("noeviction", "0");
});
afterAll(async () => {
  await g?.close();
  await server?.kill();
});

async function setPolicy(policy: string, maxmemory: string): Promise<void> {
  await g.admin.config("SET", "maxmemory-policy", policy, "maxmemory", maxmemory);
}

/** The producer connection's line in CLIENT LIST (its fields by name), or undefined. */
async function producerClient(): Promise<Record<string, string> | undefined> {
  const list = String(await g.admin.call("CLIENT", "LIST"));
  const line = list.split("\n").find((l) => / name=wechatpay-notify:producer /.test(l));
  if (line === undefined) return undefined;
  return Object.fromEntries(
    line
      .trim()
      .split(" ")
      .map((field) => field.split("=", 2) as [string, string]),
  );
}

/** Resolves once the producer connection has a command held by CLIENT PAUSE (flags=b): the batch is in flight. */
async function batchHeld(): Promise<boolean> {
  return pollUntil(async () => (await producerClient())?.flags === "b", 2_000);
}

/** Closes the producer connection from the server side; resolves once ioredis has it ready again. */
async function killProducer(): Promise<void> {
  const client = await producerClient();
  if (client?.id === undefined) throw new Error("no producer connection on the test server");
  const ready = new Promise((resolve) => g.redis.once("ready", resolve));
  await g.admin.call("CLIENT", "KILL", "ID", client.id);
  await g.admin.call("CLIENT", "UNPAUSE");
  await ready;
}

async function dedupeHitsByReceipt(): Promise<number> {
  const metrics = (await g.app.inject({ method: "GET", url: "/metrics" })).body;
  return Number(/^wpn_ingress_dedupe_hits_total\{api="v3",via="receipt"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
}

describe("a batch in flight when the producer connection closes", () => {
  it("is answered 503 when its reply comes on the next connection; the resend is taken once that server is vouched for", async () => {
    expect((await post(g.app, "/notify/v3", signedV3(g.merchant))).statusCode).toBe(204);

    await g.admin.call("CLIENT", "PAUSE", "10000", "WRITE");
    const n = signedV3(g.merchant);
    const answer = post(g.app, "/notify/v3", n);
    expect(await batchHeld()).toBe(true);
    await setPolicy("allkeys-lru", "100mb");
    await killProducer();

    const first = await answer;
    expect({ status: first.statusCode, body: first.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
    // ioredis did resend it: the server the reconnect reached ran it, and the sample taken on 'ready' finds that
    // server may evict it.
    expect(await g.queue.getJob(n.jobId)).toBeDefined();
    expect(await pollUntil(() => g.app.ingress.sampler.snapshot.checked, 2_000)).toBe(true);
    expect(g.app.ingress.sampler.unkeptBecause).toBe("redis may evict jobs (maxmemory-policy allkeys-lru)");

    // WeChat's resend is refused before it reaches Redis (its receipt there would make it a dedupe success)…
    const refused = await post(g.app, "/notify/v3", n);
    expect({ status: refused.statusCode, body: refused.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
    expect((await g.receipt(n.jobId))?.count).toBe(1);

    // …until a sample on a connection to a server that keeps jobs vouches for it: then it is a dedupe success.
    await setPolicy("noeviction", "0");
    await killProducer();
    expect(await pollUntil(() => g.app.ingress.sampler.unkeptBecause === undefined, 2_000)).toBe(true);
    const hits = await dedupeHitsByReceipt();
    expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(204);
    expect(await dedupeHitsByReceipt()).toBe(hits + 1);
    expect((await g.receipt(n.jobId))?.count).toBe(2);
  });

  it("holds back the notifications waiting behind it: they are not sent to the next connection's server unvouched", async () => {
    await g.admin.call("CLIENT", "PAUSE", "10000", "WRITE");
    const a = signedV3(g.merchant);
    const inFlight = post(g.app, "/notify/v3", a);
    expect(await batchHeld()).toBe(true);
    // Accepted while the connection was vouched for; its batch waits for the one slot.
    const b = signedV3(g.merchant);
    const waiting = post(g.app, "/notify/v3", b);
    await new Promise((r) => setTimeout(r, 50));
    await setPolicy("allkeys-lru", "100mb");
    await killProducer();

    const sent = await inFlight;
    expect({ status: sent.statusCode, body: sent.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
    // Its slot freed once the new connection was ready: not sent, the sampler vouching for nothing there yet.
    const held = await waiting;
    expect({ status: held.statusCode, body: held.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
    expect(await g.queue.getJob(b.jobId)).toBeUndefined();
  });
});
