import { createRedisConnection } from "@wpn/queue";
import { TestRedisServer } from "@wpn/testing";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicaWaitTimeoutMs } from "../src/settings.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

/**
 * INGRESS_REDIS_MIN_REPLICAS: a 2xx only once the batch's write reached that many replicas (WAIT after the script),
 * on a test-owned primary with one replica. WAIT's timeout is derived: half the enqueue bound, here 500 ms.
 */
const ENQUEUE_TIMEOUT_MS = 1_000;

const QUEUE_NOT_REPLICATED = JSON.stringify({
  code: "FAIL",
  message: "QUEUE_NOT_REPLICATED: queue not replicated, please resend",
});

let primary: TestRedisServer;
let replica: TestRedisServer;
/** Connections of the test's own, to read each server directly. */
let onPrimary: Redis;
let onReplica: Redis;
let f: IngressFixture;
/** The ingress's log lines (JSON). */
const lines: string[] = [];

beforeAll(async () => {
  primary = await TestRedisServer.start();
  replica = await TestRedisServer.start({ replicaOf: primary });
  await replica.replicating();
  onPrimary = createRedisConnection(primary.url, "admin");
  onReplica = createRedisConnection(replica.url, "admin");
  f = await createIngressFixture({
    label: "ingress-replicas",
    env: {
      REDIS_URL: primary.url,
      INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS),
      INGRESS_REDIS_MIN_REPLICAS: "1",
    },
    app: { logger: pino({ level: "info" }, { write: (line) => void lines.push(line) }) },
  });
});
afterAll(async () => {
  await f?.close();
  onPrimary?.disconnect();
  onReplica?.disconnect();
  await replica?.kill();
  await primary?.kill();
});

/** Times the primary has run WAIT (`INFO commandstats`; 0 before the first). */
async function waitCalls(): Promise<number> {
  const stats = await onPrimary.info("commandstats");
  return Number(/^cmdstat_wait:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
}

/** `added` events of one job id in the parse queue's event stream: jobs ever created under that id. */
async function timesAdded(g: IngressFixture, jobId: string): Promise<number> {
  const entries = await onPrimary.xrange(`${g.prefix}:notify.parse:events`, "-", "+");
  return entries.filter(([, fields]) => fields[1] === "added" && fields[3] === jobId).length;
}

describe("INGRESS_REDIS_MIN_REPLICAS=1", () => {
  it("answers 204 once the job is on the replica (WAIT pipelined after the script)", async () => {
    const waitsBefore = await waitCalls();
    const n = signedV3(f.merchant);
    expect((await post(f.app, "/notify/v3", n)).statusCode).toBe(204);
    // Read on the replica right after the answer, without polling: WAIT returned once it had applied the write.
    expect(await onReplica.exists(`${f.prefix}:notify.parse:${n.jobId}`)).toBe(1);
    expect(await onReplica.exists(`${f.prefix}:receipt:${n.jobId}`)).toBe(1);
    expect(await waitCalls()).toBe(waitsBefore + 1);
  });

  it("a replica that does not acknowledge: 503 QUEUE_NOT_REPLICATED within the bound; the resend after it is back is answered success, one job", async () => {
    const n = signedV3(f.merchant);
    replica.signal("SIGSTOP");
    try {
      const started = performance.now();
      const response = await post(f.app, "/notify/v3", n);
      const elapsed = performance.now() - started;
      expect(response.statusCode).toBe(503);
      expect(response.body).toBe(QUEUE_NOT_REPLICATED);
      // WAIT's 500 ms, within the enqueue bound (and so the answer budget).
      expect(elapsed).toBeGreaterThanOrEqual(ENQUEUE_TIMEOUT_MS / 2 - 5);
      expect(elapsed).toBeLessThan(ENQUEUE_TIMEOUT_MS);
      // Written on the primary all the same, with its receipt: only the acknowledgement was withheld.
      expect(await timesAdded(f, n.jobId)).toBe(1);
      expect(await onPrimary.exists(`${f.prefix}:receipt:${n.jobId}`)).toBe(1);
    } finally {
      replica.signal("SIGCONT");
    }
    await replica.replicating();

    // WeChat's resend reaches the same primary: its receipt answers it, and the replica now acknowledges.
    const resend = await post(f.app, "/notify/v3", n);
    expect(resend.statusCode).toBe(204);
    expect(await timesAdded(f, n.jobId)).toBe(1);
    expect(await onReplica.exists(`${f.prefix}:notify.parse:${n.jobId}`)).toBe(1);

    const logged = lines.map((line) => JSON.parse(line)).filter((entry) => entry.code === "QUEUE_NOT_REPLICATED");
    expect(logged).toEqual([
      expect.objectContaining({
        level: 40,
        status: 503,
        msg: "notification not accepted",
        detail: "batch of 1 job(s): 0 of 1 replica(s) acknowledged the write within 500 ms",
      }),
    ]);
    const metrics = (await f.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(/^wpn_ingress_requests_total\{[^}]*status="503",code="QUEUE_NOT_REPLICATED"\} 1$/m);
    expect(metrics).toMatch(/^wpn_ingress_enqueue_duration_seconds_count\{result="not_replicated"\} 1$/m);
    expect(metrics).toMatch(/^wpn_ingress_dedupe_hits_total\{api="v3",via="receipt"\} 1$/m);
  });
});

describe("WAIT's timeout", () => {
  it("is half the enqueue bound, at most 1 s", () => {
    expect(replicaWaitTimeoutMs(ENQUEUE_TIMEOUT_MS)).toBe(500);
    expect(replicaWaitTimeoutMs(50)).toBe(25);
    expect(replicaWaitTimeoutMs(2_000)).toBe(1_000);
    expect(replicaWaitTimeoutMs(4_400)).toBe(1_000);
  });
});

describe("INGRESS_REDIS_MIN_REPLICAS=0 (the default)", () => {
  it("sends no WAIT and answers 204 whatever the replica does", async () => {
    const g = await createIngressFixture({
      label: "ingress-replicas-off",
      merchant: f.merchant,
      env: { REDIS_URL: primary.url, INGRESS_ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS) },
    });
    const waitsBefore = await waitCalls();
    replica.signal("SIGSTOP");
    try {
      const n = signedV3(g.merchant);
      const started = performance.now();
      expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(204);
      expect(performance.now() - started).toBeLessThan(ENQUEUE_TIMEOUT_MS / 2);
      expect(await timesAdded(g, n.jobId)).toBe(1);
      expect(await waitCalls()).toBe(waitsBefore);
    } finally {
      replica.signal("SIGCONT");
      await g.close();
    }
  });
});
