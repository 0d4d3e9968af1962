import { createQueue, createRedisConnection, defaultJobOptions, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { type Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { createWorld, quietLog, seedOrder, seedSkus, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// notify.publish as the worker sees it: what it counts of the events it adds, and what it reports of the jobs the
// merchant's consumer fails (no worker of ours sees those failures).
let world: World;
let worker: WorkerHandle;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let publishQueue: Queue;

beforeAll(async () => {
  world = await createWorld("wpubq");
  await seedSkus(world.prisma, { A: 1_000 });
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
