import { APPLY_JOB_NAME, createQueue, createRedisConnection, deadLetterSchema, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { createWorld, inline, quietLog, seedOrder, seedSkus, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Jobs queued while no worker ran (a deploy gone wrong, a crash loop, the fleet scaled to 0) for longer than the
 * unknown-order window, an outage no worker observed: their window is counted from their first run, not from their
 * creation. Before, such a payment was found past its window at its first attempt and dead-lettered ORDER_NOT_FOUND
 * at once, though its order was committed a moment later.
 */
let world: World;
let worker: WorkerHandle;
let redis: Redis;
let applyQueue: Queue;
let deadQueue: Queue;
const WINDOW_SECONDS = 2;
/** How long before its first run the jobs were queued: five windows. */
const QUEUED_FOR_MS = 5 * WINDOW_SECONDS * 1000;

beforeAll(async () => {
  world = await createWorld("firstrun");
  await seedSkus(world.prisma, { A: 100 });
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  deadQueue = createQueue(QueueName.Dead, redis, world.prefix);
  worker = await startWorker(world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: String(WINDOW_SECONDS) }), {
    logger: quietLog,
    healthPort: 0,
  });
});

afterAll(async () => {
  await worker?.close();
  await Promise.all([applyQueue?.close(), deadQueue?.close()]);
  redis?.disconnect();
  await world?.cleanup();
});

const notification = (id: string) => world.prisma.notification.findUnique({ where: { id } });

async function letterOf(notificationId: string) {
  const letters = await deadQueue.getJobs(["waiting"]);
  return letters.find((letter) => letter.data.notificationId === notificationId);
}

/** A payment's apply job, added as the ingress and parse stage queued it `QUEUED_FOR_MS` ago, for an order not committed. */
async function addOldPayment(outTradeNo: string): Promise<{ id: string; addedAt: number }> {
  const payment = v3Payment(world, { outTradeNo, total: 100 });
  const { applyJob } = await inline(world).parse(payment);
  const addedAt = Date.now();
  await applyQueue.add(APPLY_JOB_NAME, applyJob!, {
    jobId: applyJob!.notificationId,
    timestamp: addedAt - QUEUED_FOR_MS,
  });
  return { id: payment.id, addedAt };
}

describe("a job queued for longer than the window before any worker ran it", () => {
  it("is retried for the window counted from its first run, and applied when its order is committed a moment later", async () => {
    const outTradeNo = "T-firstrun-late";
    const { id } = await addOldPayment(outTradeNo);
    await waitFor("first failed attempt", async () => (await notification(id))?.errorCode === "ORDER_NOT_FOUND");
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 } });
    await waitFor("settled", async () => ["APPLIED", "DEAD"].includes((await notification(id))?.status ?? ""), 10_000);
    expect(await letterOf(id)).toBeUndefined();
    expect((await notification(id))?.status).toBe("APPLIED");
  });

  it("is still dead-lettered ORDER_NOT_FOUND once the window counted from its first run is over", async () => {
    const { id, addedAt } = await addOldPayment("T-firstrun-never");
    const letter = await waitFor("dead letter", () => letterOf(id), 15_000);
    const dead = deadLetterSchema.parse(letter.data);
    expect(dead.code).toBe("ORDER_NOT_FOUND");
    expect(dead.attemptsMade).toBeGreaterThanOrEqual(2);
    // The last try at the end of the window counted from the first run (a moment after the add), not a doubling later.
    expect(dead.failedAt - addedAt).toBeGreaterThanOrEqual(WINDOW_SECONDS * 1000 - 100);
    expect(dead.failedAt - addedAt).toBeLessThan(WINDOW_SECONDS * 1000 + 3_500);
    await waitFor("DEAD", async () => (await notification(id))?.status === "DEAD");
  });
});
