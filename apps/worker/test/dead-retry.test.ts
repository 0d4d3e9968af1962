import { PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replayDeadLetter } from "../src/replay.ts";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { orderOf, quietLog, seedOrder, v2Payment, type World } from "./support/fixtures.ts";
import { closePipeline, notificationWithEvents, openPipeline, type Pipeline } from "./support/pipeline.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A parse job meeting a DEAD row: moved on when the parse stage dead-lettered it (nothing holds its apply job's id),
 * left to the apply letter's replay when the apply stage did (the failed apply job holds it, 7 days).
 */
let pipeline: Pipeline | undefined;
let world: World;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let deadQueue: Queue;
beforeAll(async () => {
  pipeline = await openPipeline("wdeadretry", { A: 1_000 });
  ({ world, redis, parseQueue, applyQueue, deadQueue } = pipeline);
});
afterAll(() => closePipeline(pipeline));

const notification = (id: string) => notificationWithEvents(world, id);
const kindsOf = async (id: string) => (await notification(id))?.events.map((e) => e.kind) ?? [];

/** The waiting dead letter of `notificationId` from `queue`. */
async function letterOf(queue: string, notificationId: string) {
  const letters = await deadQueue.getJobs(["waiting"], 0, -1, true);
  return letters.find((j) => j.data?.queue === queue && j.data?.notificationId === notificationId);
}

/** Runs `body` with a worker of this world, the unknown-order and key windows 1 s. */
async function withWorker(overrides: Record<string, string>, body: () => Promise<void>): Promise<void> {
  const worker: WorkerHandle = await startWorker(
    world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "1", ...overrides }),
    { logger: quietLog, healthPort: 0 },
  );
  try {
    await body();
  } finally {
    await worker.close();
  }
}
const WITHOUT_APIV2_KEY = { WECHATPAY_APIV2_KEY: "" };

/** Waits until the parse job of `id` is in `state`. */
const parseJobIs = (id: string, state: "failed" | "completed") =>
  waitFor(`parse ${state}`, async () => (await parseQueue.getJobState(id)) === state, 15_000);

describe("a parse job meeting a DEAD row", () => {
  it("dead-lettered by the parse stage, its failed parse job retried (bull-board): applied", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v2Payment(world, { outTradeNo: otn, total: 100 });
    // The APIv2 key not configured yet: APIV2_KEY_MISSING until its window ends, then the parse job's letter.
    await withWorker(WITHOUT_APIV2_KEY, async () => {
      await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
      await parseJobIs(job.id, "failed");
    });
    expect(await notification(job.id)).toMatchObject({ status: "DEAD", errorCode: "APIV2_KEY_MISSING" });
    const letter = await letterOf(QueueName.Parse, job.id);
    expect(letter).toBeDefined();

    // The key configured, the operator retries the failed parse job in bull-board (Job#retry).
    await withWorker({}, async () => {
      await (await parseQueue.getJob(job.id))?.retry("failed");
      await parseJobIs(job.id, "completed");
      // Before: the parse answered DEAD, the row stayed DEAD (a REDELIVERED entry) and nothing was applied.
      expect((await parseQueue.getJob(job.id))?.returnvalue).toMatchObject({ outcome: "QUEUED" });
      await waitFor("APPLIED", async () => (await notification(job.id))?.status === "APPLIED");
      expect((await orderOf(world.prisma, otn)).status).toBe("SUCCESS");
      expect(await kindsOf(job.id)).not.toContain("REDELIVERED");
      expect((await kindsOf(job.id)).slice(-3)).toEqual(["DEAD_LETTERED", "PARSED", "APPLIED"]);

      // The retry left the letter behind (why the READMEs say replay, not retry); replaying it changes nothing.
      const outcomes = await replayDeadLetter(
        { connection: redis, prefix: world.prefix, prisma: world.prisma },
        letter?.id ?? "",
      );
      expect(outcomes).toMatchObject([{ status: "replayed", notificationId: job.id }]);
      await parseJobIs(job.id, "completed");
      await waitFor("ALREADY", async () => (await parseQueue.getJob(job.id))?.returnvalue?.outcome === "ALREADY");
      expect(await notification(job.id)).toMatchObject({ status: "APPLIED" });
    });
  }, 60_000);

  it("dead-lettered by the apply stage, then a later delivery by the parse stage, that parse job retried: stays DEAD, the apply letter's replay applies it", async () => {
    const otn = `T-deadretry-${Date.now()}`;
    const job = v2Payment(world, { outTradeNo: otn, total: 100 });
    // No order yet: ORDER_NOT_FOUND until the window ends, then the apply job's letter (the failed job kept 7 days).
    await withWorker({}, async () => {
      await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
      await waitFor("apply letter", () => letterOf(QueueName.Apply, job.id), 15_000);
      await waitFor("DEAD", async () => (await notification(job.id))?.status === "DEAD");
    });
    const applyLetter = await letterOf(QueueName.Apply, job.id);
    expect(await applyQueue.getJobState(job.id)).toBe("failed");

    // Delivered again once its parse job is gone, to a worker that has lost the APIv2 key: dead-lettered at parse.
    await parseQueue.remove(job.id);
    await withWorker(WITHOUT_APIV2_KEY, async () => {
      await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
      await parseJobIs(job.id, "failed");
    });
    expect((await kindsOf(job.id)).at(-1)).toBe("DEAD_LETTERED");

    await seedOrder(world, { outTradeNo: otn, amountTotal: 100, items: { A: 1 } });
    await withWorker({}, async () => {
      await (await parseQueue.getJob(job.id))?.retry("failed");
      await parseJobIs(job.id, "completed");
      // An apply job enqueued now would be collapsed into the failed one: the row says so instead of PROCESSING.
      expect((await parseQueue.getJob(job.id))?.returnvalue).toMatchObject({ outcome: "DEAD" });
      expect(await notification(job.id)).toMatchObject({ status: "DEAD" });
      expect((await kindsOf(job.id)).at(-1)).toBe("REDELIVERED");

      const outcomes = await replayDeadLetter(
        { connection: redis, prefix: world.prefix, prisma: world.prisma },
        applyLetter?.id ?? "",
      );
      expect(outcomes).toMatchObject([{ status: "replayed", notificationId: job.id }]);
      await waitFor("APPLIED after replay", async () => (await notification(job.id))?.status === "APPLIED");
      expect((await orderOf(world.prisma, otn)).status).toBe("SUCCESS");
    });
  }, 60_000);
});
