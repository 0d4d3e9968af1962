import {
  createQueue,
  createRedisConnection,
  defaultJobOptions,
  PARSE_JOB_NAME,
  type ParseJob,
  publishJobSchema,
  QueueName,
  v3NotificationId,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { type Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import {
  createWorld,
  quietLog,
  seedOrder,
  seedSkus,
  v2Refund,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// notify.publish as the worker sees it: what it counts of the events it adds, and what it reports of the jobs the
// merchant's consumer fails (no worker of ours sees those failures).
let world: World;
let worker: WorkerHandle;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let publishQueue: Queue;
/** Another merchant of the deployment (a Merchant row, APIv3), numbering its orders as it likes. */
const tenant = { mchid: "1900000444", appid: "wx0000000000000444", apiV3Key: "t".repeat(32) };

beforeAll(async () => {
  world = await createWorld("wpubq");
  await seedSkus(world.prisma, { A: 1_000 });
  await world.prisma.merchant.create({ data: { ...tenant, apiV2Key: null } });
  worker = await startWorker(world.config({ PUBLISH_EVENTS: "true" }), { logger: quietLog, healthPort: 0 });
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  publishQueue = createQueue(QueueName.Publish, redis, world.prefix);
});
afterAll(async () => {
  await worker?.close();
  await Promise.all([parseQueue, applyQueue, publishQueue].map((q) => q?.close()));
  redis?.disconnect();
  await world.cleanup();
});

/** A paid notification through parse and apply; resolves with its id once its event is in notify.publish. */
async function paidNotification(): Promise<string> {
  const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
  const job = v3Payment(world, { outTradeNo: otn });
  await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
  await waitFor("publish job", () => publishQueue.getJob(job.id));
  return job.id;
}

const published = async () => (await worker.metrics.published.get()).values.reduce((sum, v) => sum + v.value, 0);

/** wpn_worker_publish_jobs by state, as /metrics serves it. */
async function publishJobsScraped(): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${worker.healthPort}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^wpn_worker_publish_jobs\{state="(\w+)"\} (-?\d+)$/gm)) {
    counts[m[1] ?? ""] = Number(m[2]);
  }
  return counts;
}

describe("notify.publish", () => {
  it("counts an event once in wpn_worker_published_events_total when a re-run adds its copy again", async () => {
    const before = await published();
    const id = await paidNotification();
    await waitFor("apply completed", async () => (await applyQueue.getJobState(id)) === "completed");
    expect(await published()).toBe(before + 1);
    // The apply job runs again (a stalled or replayed job): ALREADY, the same event derived again — and not added,
    // its first copy still waiting in notify.publish.
    await (await applyQueue.getJob(id))?.retry("completed");
    await waitFor(
      "apply re-run",
      async () => (await applyQueue.getJob(id))?.returnvalue?.outcome === "ALREADY" && (await applyQueue.getJob(id)),
    );
    expect(await published()).toBe(before + 1);
    expect(await publishQueue.getJobCounts("waiting")).toEqual({ waiting: 1 });
  }, 30_000);

  it("reports the jobs a consumer failed for good in wpn_worker_publish_jobs, and a retry delivers them", async () => {
    await publishQueue.drain();
    const id = await paidNotification();
    expect(await publishJobsScraped()).toEqual({ waiting: 1, active: 0, delayed: 0, failed: 0 });
    // As after attempts 1 … n−1 (their backoff takes days): the consumer's next attempt is the last.
    const attempts = defaultJobOptions[QueueName.Publish].attempts ?? 1;
    await redis.hset(`${world.prefix}:${QueueName.Publish}:${id}`, "atm", String(attempts - 1));
    let erpDown = true;
    const delivered: string[] = [];
    const consumer = new Worker(
      QueueName.Publish,
      async (job) => {
        if (erpDown) throw new Error("ERP unavailable");
        delivered.push(job.data.notificationId);
      },
      { connection: createRedisConnection(TEST_REDIS_URL, "worker"), prefix: world.prefix },
    );
    try {
      await waitFor("failed for good", async () => (await publishQueue.getJobState(id)) === "failed");
      expect(await publishJobsScraped()).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 1 });
      // The ERP is back: the operator retries the failed jobs (bull-board's retry, or Queue#retryJobs).
      erpDown = false;
      await publishQueue.retryJobs({ state: "failed" });
      await waitFor("delivered", async () => delivered.includes(id));
      await waitFor("completed", async () => (await publishQueue.getJobState(id)) === "completed");
      expect(await publishJobsScraped()).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0 });
    } finally {
      await consumer.close();
      await (consumer.opts.connection as Redis).quit();
    }
  }, 30_000);
});

describe("whose order an event is", () => {
  /** Enqueues `jobs` as the ingress does; resolves with their events as a consumer parses them, in that order. */
  async function eventsOf(jobs: ParseJob[]) {
    for (const job of jobs) await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    return Promise.all(
      jobs.map(async (job) => {
        const published = await waitFor(`event of ${job.id}`, () => publishQueue.getJob(job.id));
        return { name: published.name, ...publishJobSchema.parse(published.data) };
      }),
    );
  }

  it("every event names the order's merchant and sub-merchant: three orders under one out_trade_no", async () => {
    const outTradeNo = `T-shared-${Date.now()}`;
    const sub = "1900000A55";
    const own = await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 } });
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 }, ...tenant });
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 }, subMchid: sub });
    const tenantKey = Buffer.from(tenant.apiV3Key);
    /** A notification of the tenant, as the ingress queues one its keys verified (/notify/v3/:mchid). */
    const ofTenant = (job: ParseJob): ParseJob => ({
      ...job,
      id: v3NotificationId(tenant.mchid, job.id.split(":")[2] ?? ""),
      mchid: tenant.mchid,
    });
    const payments = await eventsOf([
      v3Payment(world, { outTradeNo: own, transactionId: "4200000000MC1" }),
      ofTenant(v3Payment(world, { outTradeNo, ...tenant, apiV3Key: tenantKey, transactionId: "4200000000MC2" })),
      v3Payment(world, { outTradeNo, partner: { subMchid: sub }, transactionId: "4200000000MC3" }),
    ]);
    // A second charge of the tenant's order, once its first is applied: payment.review (DUPLICATE_PAYMENT).
    const review = await eventsOf([
      ofTenant(v3Payment(world, { outTradeNo, ...tenant, apiV3Key: tenantKey, transactionId: "4200000000MC4" })),
    ]);
    const refunds = await eventsOf([
      ofTenant(
        v3Refund(world, {
          outTradeNo,
          mchid: tenant.mchid,
          apiV3Key: tenantKey,
          transactionId: "4200000000MC2",
          refund: 100,
          total: 100,
          status: "CLOSED",
        }),
      ),
      // APIv2: the sub-merchant is named in the unsigned outer XML; the order found under it holds the
      // transaction req_info names (else SUB_MCHID_MISMATCH, no event).
      v2Refund(world, {
        outTradeNo,
        partner: { subMchid: sub },
        transactionId: "4200000000MC3",
        refund: 100,
        total: 100,
      }),
    ]);
    // Before: no mchid, no subMchid — four events of order "T-shared-…" nobody could tell apart but by orderId.
    expect(
      [...payments, ...review, ...refunds].map((e) => [e.name, e.rev, e.mchid, e.subMchid, e.restockByHand]),
    ).toEqual([
      ["payment.succeeded", 2, world.merchant.mchid, null, null],
      ["payment.succeeded", 2, tenant.mchid, null, null],
      ["payment.succeeded", 2, world.merchant.mchid, sub, null],
      ["payment.review", 2, tenant.mchid, null, null],
      ["refund.closed", 2, tenant.mchid, null, null],
      ["refund.succeeded", 2, world.merchant.mchid, sub, null],
    ]);
    expect(new Set(payments.slice(0, 3).map((e) => e.orderId)).size).toBe(3);
  }, 30_000);
});
