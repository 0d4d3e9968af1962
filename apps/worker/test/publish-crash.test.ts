import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { resolve } from "node:path";
import { createQueue, PARSE_JOB_NAME, type ParseJob, type PublishJob, publishJobSchema, QueueName } from "@wpn/queue";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import {
  inline,
  quietLog,
  seedOrder,
  V2_PAYER_OPENID,
  v2Payment,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";
import { closePipeline, openPipeline, type Pipeline } from "./support/pipeline.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The event of an effect committed by a worker process killed (SIGKILL) between the PostgreSQL commit and the add to
 * notify.publish: its apply job stalls, runs again in another worker (ALREADY) and publishes the event the first run
 * owed, with what that run committed — once, under the notification id, whatever came in between.
 */
let pipeline: Pipeline | undefined;
let world: World;
let parseQueue: Queue;
let publishQueue: Queue;
beforeAll(async () => {
  pipeline = await openPipeline("wpubcrash", { A: 1_000 });
  ({ world, parseQueue } = pipeline);
  publishQueue = createQueue(QueueName.Publish, pipeline.redis, world.prefix);
});
afterAll(async () => {
  await publishQueue?.close();
  await closePipeline(pipeline);
});

/** Jobs run by a worker whose locks lapse fast once it is gone, and that looks for stalled jobs often. */
const FAST_STALL = { PUBLISH_EVENTS: "true", WORKER_LOCK_DURATION_MS: "1000", WORKER_STALLED_INTERVAL_MS: "500" };
const repoRoot = resolve(import.meta.dirname, "../../..");

/** Runs `job` through a worker process (support/apply-crash-process.ts) and SIGKILLs it right after its apply commit. */
async function commitThenKill(job: ParseJob): Promise<void> {
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    ["--import", "tsx", "apps/worker/test/support/apply-crash-process.ts"],
    { cwd: repoRoot, env: { ...process.env, ...world.env, ...FAST_STALL } },
  );
  let output = "";
  const exited = new Promise<NodeJS.Signals | null>((done) => child.once("exit", (_code, signal) => done(signal)));
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  try {
    await waitFor("the worker process to start", async () => output.includes("started\n"), 20_000);
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("the apply commit", async () => output.includes(`committed ${job.id}\n`), 15_000);
  } finally {
    child.kill("SIGKILL");
  }
  expect(await exited, output).toBe("SIGKILL");
}

/** Starts a worker (fast stall detection), waits for the event of `id`, and closes the worker. */
async function eventAfterRecovery(id: string): Promise<PublishJob> {
  const worker = await startWorker(world.config(FAST_STALL), { logger: quietLog, healthPort: 0 });
  try {
    const published = await waitFor("the event", () => publishQueue.getJob(id), 15_000);
    return publishJobSchema.parse(published.data);
  } finally {
    await worker.close();
  }
}

const appliedAtOf = async (id: string) =>
  (await world.prisma.notification.findUniqueOrThrow({ where: { id } })).appliedAt?.getTime();

describe("a worker process killed between the commit and the event's add", () => {
  it("a payment: the stalled job publishes payment.succeeded once; its APIv2 report applied meanwhile adds none", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 700, items: { A: 1 } });
    const transactionId = "4200000000CRASH1";
    // The payer as its APIv2 report names them (a direct merchant's user has one openid on both APIs).
    const job = v3Payment(world, {
      outTradeNo,
      transactionId,
      total: 700,
      fields: { payer: { openid: V2_PAYER_OPENID } },
    });
    await commitThenKill(job);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({
      status: "APPLIED",
    });
    expect(await publishQueue.getJob(job.id)).toBeUndefined();
    // The same payment reported on APIv2 before the job runs again: DUPLICATE, nothing to publish.
    const twin = inline(world);
    expect((await twin.deliver(v2Payment(world, { outTradeNo, transactionId, total: 700 }))).apply?.outcome).toBe(
      "DUPLICATE",
    );
    expect(twin.published).toEqual([]);

    const event = await eventAfterRecovery(job.id);
    const order = await world.prisma.order.findFirstOrThrow({ where: { outTradeNo } });
    expect(event).toEqual({
      v: 1,
      rev: 2,
      type: "payment.succeeded",
      mchid: world.merchant.mchid,
      subMchid: null,
      notificationId: job.id,
      outTradeNo,
      orderId: order.id,
      orderStatus: "SUCCESS",
      reviewReason: null,
      transactionId,
      outRefundNo: null,
      amount: 700,
      occurredAt: await appliedAtOf(job.id),
      restockByHand: null,
    });
    expect(await publishQueue.getJobCounts("waiting")).toMatchObject({ waiting: 1 });
  }, 60_000);

  it("the refund closing a DUPLICATE_PAYMENT review: the stalled job publishes its refund.review, orderStatus SUCCESS", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const run = inline(world);
    await run.deliver(v3Payment(world, { outTradeNo, transactionId: "4200000000CRASHA", total: 1_000 }));
    const charge = await run.deliver(v3Payment(world, { outTradeNo, transactionId: "4200000000CRASHB", total: 1_000 }));
    expect(charge.apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT", orderStatus: "PAYMENT_REVIEW" });
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId: "4200000000CRASHB",
      outRefundNo: "RF-CRASHB",
      refund: 1_000,
      total: 1_000,
    });
    await commitThenKill(refund);
    const order = await world.prisma.order.findFirstOrThrow({ where: { outTradeNo } });
    expect(order).toMatchObject({ status: "SUCCESS", reviewReason: null });

    expect(await eventAfterRecovery(refund.id)).toEqual({
      v: 1,
      rev: 2,
      type: "refund.review",
      mchid: world.merchant.mchid,
      subMchid: null,
      notificationId: refund.id,
      outTradeNo,
      orderId: order.id,
      orderStatus: "SUCCESS",
      reviewReason: "DUPLICATE_PAYMENT_REFUNDED",
      transactionId: "4200000000CRASHB",
      outRefundNo: "RF-CRASHB",
      amount: 1_000,
      occurredAt: await appliedAtOf(refund.id),
      restockByHand: null,
    });
  }, 60_000);
});
