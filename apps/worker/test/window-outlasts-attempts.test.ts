import { APPLY_BACKOFF_TYPE, APPLY_JOB_NAME } from "@wpn/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { inline, orderOf, quietLog, seedOrder, v3Payment, v3Refund, type World } from "./support/fixtures.ts";
import { closePipeline, notificationWithEvents, openPipeline, type Pipeline } from "./support/pipeline.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A window fault (ORDER_NOT_FOUND, ORDER_NOT_PAID, TRANSACTION_NOT_SEEN, a key that does not fit yet) is ended by its
 * window, not by the job's attempts: on its last attempt, while the window lasts, the job is put back without using
 * an attempt (stage.ts, failureVerdict). The queues' 20 attempts outlast the longest window from a job's first run, but
 * not the whole window a PostgreSQL outage gives every waiting job from its end (retry-window.test.ts computes it:
 * with the longest window, a job that met an outage after 13 or more attempts ran out of them up to 72 h early). Here a
 * job with 2 attempts against a 4 s window plays a job whose attempts end before its window: before, it was
 * dead-lettered at its second attempt — the refund as TRANSACTION_NOT_SEEN instead of decided TRANSACTION_MISMATCH, the
 * payment as ORDER_NOT_FOUND though its order was committed within the window.
 */
const WINDOW_SECONDS = 4;
/** Two attempts 200 ms apart, far fewer than the window needs. */
const SHORT_BUDGET = { attempts: 2, backoff: { type: APPLY_BACKOFF_TYPE, delay: 200, jitter: 0 } } as const;

let pipeline: Pipeline | undefined;
let world: World;
let worker: WorkerHandle;
beforeAll(async () => {
  pipeline = await openPipeline("wwinattempts", { A: 100 });
  world = pipeline.world;
  worker = await startWorker(world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: String(WINDOW_SECONDS) }), {
    logger: quietLog,
    healthPort: 0,
  });
});
afterAll(async () => {
  await worker?.close();
  await closePipeline(pipeline);
});

/** Adds the apply job of `job` (parsed inline: its row recorded) with SHORT_BUDGET; returns when it was added. */
async function addApply(job: Parameters<ReturnType<typeof inline>["parse"]>[0]): Promise<number> {
  const { applyJob } = await inline(world).parse(job);
  const addedAt = Date.now();
  await pipeline?.applyQueue.add(APPLY_JOB_NAME, applyJob!, { jobId: applyJob!.notificationId, ...SHORT_BUDGET });
  return addedAt;
}

async function lettersOf(notificationId: string): Promise<string[]> {
  const letters = (await pipeline?.deadQueue.getJobs(["waiting"])) ?? [];
  return letters.filter((l) => l.data.notificationId === notificationId).map((l) => l.data.code);
}

describe("a window fault whose attempts run out before its window", () => {
  it("a refund of a transaction never seen: decided TRANSACTION_MISMATCH at the window's end, not dead-lettered", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const paid = await inline(world).deliver(
      v3Payment(world, { outTradeNo, transactionId: "4200WINA1", total: 1_000 }),
    );
    expect(paid.apply?.outcome).toBe("APPLIED");
    const refund = v3Refund(world, { outTradeNo, transactionId: "4200WINB1", refund: 1_000, total: 1_000 });
    const addedAt = await addApply(refund);
    const settled = await waitFor(
      "refund settled",
      async () => {
        const n = await notificationWithEvents(world, refund.id);
        return n && ["REVIEW", "DEAD"].includes(n.status) ? { ...n, at: Date.now() } : null;
      },
      WINDOW_SECONDS * 1000 + 10_000,
    );
    expect({ status: settled.status, errorCode: settled.errorCode }).toEqual({
      status: "REVIEW",
      errorCode: "TRANSACTION_MISMATCH",
    });
    expect(await lettersOf(refund.id)).toEqual([]);
    // At the window's end, not before.
    expect(settled.at - addedAt).toBeGreaterThanOrEqual(WINDOW_SECONDS * 1000 - 200);
    // Within its 2 attempts: the waits used none.
    const job = await pipeline?.applyQueue.getJob(refund.id);
    expect(job?.attemptsMade).toBeLessThanOrEqual(2);
    expect(job?.returnvalue).toMatchObject({ outcome: "TRANSACTION_MISMATCH" });
    const failed = settled.events.filter((e) => e.kind === "FAILED");
    expect(failed.length).toBeGreaterThanOrEqual(2);
    // Each says when the next try runs — a retry's backoff or a last attempt's wait —, never past the window's end.
    for (const e of failed) {
      const { retryInMs } = e.detail as { retryInMs: unknown };
      expect(retryInMs).toBeTypeOf("number");
      expect(retryInMs).toBeGreaterThan(0);
      expect(retryInMs).toBeLessThanOrEqual(WINDOW_SECONDS * 1000);
    }
  }, 30_000);

  it("a payment whose order is committed after its attempts but within its window is applied", async () => {
    const outTradeNo = `T-win-late-${Date.now()}`;
    const payment = v3Payment(world, { outTradeNo, total: 100 });
    await addApply(payment);
    await waitFor("second attempt failed", async () => {
      const n = await notificationWithEvents(world, payment.id);
      return (n?.events.filter((e) => e.kind === "FAILED").length ?? 0) >= 2 || n?.status === "DEAD";
    });
    // The checkout commits the order late, within the window.
    await new Promise((r) => setTimeout(r, 1_000));
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 } });
    await waitFor(
      "payment settled",
      async () => ["APPLIED", "DEAD"].includes((await notificationWithEvents(world, payment.id))?.status ?? ""),
      WINDOW_SECONDS * 1000 + 10_000,
    );
    expect((await notificationWithEvents(world, payment.id))?.status).toBe("APPLIED");
    expect(await lettersOf(payment.id)).toEqual([]);
    expect((await orderOf(world.prisma, outTradeNo)).status).toBe("SUCCESS");
  }, 30_000);
});
