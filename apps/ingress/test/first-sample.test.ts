import { createRedisConnection } from "@wpn/queue";
import { TestRedisServer } from "@wpn/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture, post, signedV3, V3_QUEUE_UNAVAILABLE } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

// Before the queue sampler's first sample has read Redis's eviction policy and ROLE, the intake cannot tell whether a
// job Redis confirms is kept. The window is held open deterministically: the test's own redis-server is stopped
// (SIGSTOP: connections stay open, nothing is answered) before the app starts its sampler, so the first sample stays
// unanswered, and the sampling interval is long enough that it is the only one.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Setup = "evicting" | "writable replica" | "healthy";

/** A test-owned Redis configured as `setup` says, and an ingress in front of it that is built but not readied. */
async function ingressInFront(setup: Setup): Promise<{ server: TestRedisServer; g: IngressFixture }> {
  let server: TestRedisServer;
  if (setup === "writable replica") {
    const primary = await TestRedisServer.start();
    cleanups.push(() => primary.kill());
    server = await TestRedisServer.start({ replicaOf: primary });
    // Synced: a replica loading its first copy answers LOADING, which is not the subject here.
    await server.replicating();
  } else {
    server = await TestRedisServer.start();
  }
  const owned = server;
  cleanups.push(() => owned.kill());
  const admin = createRedisConnection(server.url, "admin");
  try {
    if (setup === "evicting") await admin.config("SET", "maxmemory-policy", "allkeys-lru", "maxmemory", "1gb");
    if (setup === "writable replica") await admin.config("SET", "replica-read-only", "no");
  } finally {
    admin.disconnect();
  }
  const g = await createIngressFixture({
    label: `ingress-first-sample-${setup.replace(" ", "-")}`,
    // Long enough for a request held behind the stopped Redis to be answered 2xx once it resumes (not QUEUE_TIMEOUT).
    env: { REDIS_URL: server.url, INGRESS_ENQUEUE_TIMEOUT_MS: "4000" },
    app: { sampleIntervalMs: 60_000 },
    ready: false,
  });
  // SIGCONT first: a producer waiting on a stopped server would hold the app's close.
  cleanups.push(async () => {
    owned.signal("SIGCONT");
    await g.close();
  });
  return { server, g };
}

/** Enqueue batches the app has sent to Redis so far. */
async function batchesSent(g: IngressFixture): Promise<number> {
  const histogram = await g.app.ingress.metrics.batchSize.get();
  return histogram.values.find((v) => v.metricName?.endsWith("_count"))?.value ?? 0;
}

describe("before the queue sampler's first sample", () => {
  it.each<Setup>(["evicting", "writable replica", "healthy"])(
    "a Redis %s: notifications are answered 503 QUEUE_UNAVAILABLE, never 2xx, until a sample read it",
    async (setup) => {
      const { server, g } = await ingressInFront(setup);
      server.signal("SIGSTOP");
      // onReady starts the sampler: its first sample is sent and stays unanswered.
      await g.app.ready();
      expect(g.app.ingress.sampler.snapshot.eviction).toBeUndefined();
      const n = signedV3(g.merchant);
      let answered = false;
      const answer = post(g.app, "/notify/v3", n).finally(() => {
        answered = true;
      });
      // Either the intake answered without Redis, or it sent the job to the stopped Redis (the defect): only then is
      // Redis resumed, so a job it would take is answered 2xx and the test fails on it.
      expect(await pollUntil(async () => answered || (await batchesSent(g)) > 0, 5_000)).toBe(true);
      server.signal("SIGCONT");
      const refused = await answer;
      expect({ status: refused.statusCode, body: refused.body }).toEqual({ status: 503, body: V3_QUEUE_UNAVAILABLE });
      expect(await batchesSent(g)).toBe(0);
      expect(await g.queue.getJob(n.jobId)).toBeUndefined();

      // Once a sample has read the policy and the role, only a Redis that keeps its jobs takes notifications.
      await g.app.ingress.sampler.sample();
      const after = await post(g.app, "/notify/v3", n);
      expect(after.statusCode).toBe(setup === "healthy" ? 204 : 503);
      expect((await g.queue.getJob(n.jobId)) !== undefined).toBe(setup === "healthy");
    },
  );
});
