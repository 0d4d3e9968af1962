import { PARSE_JOB_NAME } from "@wpn/queue";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { inline, orderOf, quietLog, seedOrder, v3Payment, v3Refund, type World } from "./support/fixtures.ts";
import { closePipeline, notificationWithEvents, openPipeline, type Pipeline } from "./support/pipeline.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A refund naming a transaction that is neither its order's nor a second charge recorded yet, through the queues: it is
 * retried within the unknown-order window (TRANSACTION_NOT_SEEN, nothing written) — WeChat may deliver the second
 * charge's payment after its refund — and decided TRANSACTION_MISMATCH (REVIEW, not a dead letter) once the window has
 * passed. Before, it was TRANSACTION_MISMATCH at its first attempt.
 */
let pipeline: Pipeline | undefined;
let world: World;
let parseQueue: Queue;
let applyQueue: Queue;
let deadQueue: Queue;
beforeAll(async () => {
  pipeline = await openPipeline("wunseentxn", { A: 100 });
  ({ world, parseQueue, applyQueue, deadQueue } = pipeline);
});
afterAll(() => closePipeline(pipeline));

const notification = (id: string) => notificationWithEvents(world, id);

/** An order of 1 000 fen paid by `a` (applied inline). */
async function paidBy(a: string) {
  const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
  const { apply } = await inline(world).deliver(v3Payment(world, { outTradeNo, transactionId: a, total: 1_000 }));
  expect(apply?.outcome).toBe("APPLIED");
  return outTradeNo;
}

/** Runs `during` with a worker whose unknown-order window is `seconds`. */
async function withWorker(seconds: number, during: () => Promise<void>) {
  const config = world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: String(seconds) });
  const worker = await startWorker(config, { logger: quietLog, healthPort: 0 });
  try {
    await during();
  } finally {
    await worker.close();
  }
}

/** Queues `refund` for a worker with a 2 s window and waits until it is settled (REVIEW or DEAD); ms it took. */
async function settleWithin2sWindow(refund: { id: string }): Promise<number> {
  const started = Date.now();
  await withWorker(2, async () => {
    await parseQueue.add(PARSE_JOB_NAME, refund, { jobId: refund.id });
    await waitFor("refund settled", async () =>
      ["REVIEW", "DEAD"].includes((await notification(refund.id))?.status ?? ""),
    );
  });
  return Date.now() - started;
}

describe("a refund of a transaction not seen (yet)", () => {
  it("waits for the second charge's payment delivered after it, then is DUPLICATE_PAYMENT_REFUNDED", async () => {
    const [a, b] = ["4200UNSEENA1", "4200UNSEENB1"];
    const outTradeNo = await paidBy(a);
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId: b,
      outRefundNo: "RF-unseen-1",
      refund: 1_000,
      total: 1_000,
    });
    const payment = v3Payment(world, { outTradeNo, transactionId: b, total: 1_000 });
    await withWorker(60, async () => {
      await parseQueue.add(PARSE_JOB_NAME, refund, { jobId: refund.id });
      await waitFor(
        "TRANSACTION_NOT_SEEN",
        async () => (await notification(refund.id))?.errorCode === "TRANSACTION_NOT_SEEN",
      );
      expect((await notification(refund.id))?.status).toBe("FAILED");
      await parseQueue.add(PARSE_JOB_NAME, payment, { jobId: payment.id });
      await waitFor("refund settled", async () => (await notification(refund.id))?.status === "REVIEW", 30_000);
    });
    expect(await notification(payment.id)).toMatchObject({ status: "REVIEW", errorCode: "DUPLICATE_PAYMENT" });
    expect(await notification(refund.id)).toMatchObject({ errorCode: "DUPLICATE_PAYMENT_REFUNDED" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      transactionId: a,
      refundedTotal: 0,
      refunds: [{ outRefundNo: "RF-unseen-1", transactionId: b, reviewReason: "DUPLICATE_PAYMENT_REFUNDED" }],
    });
    expect((await applyQueue.getJob(refund.id))?.returnvalue).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED" });
  }, 60_000);

  it("a transaction that never appears: TRANSACTION_MISMATCH (REVIEW, nothing recorded) once the window has passed", async () => {
    const outTradeNo = await paidBy("4200UNSEENA2");
    const refund = v3Refund(world, { outTradeNo, transactionId: "4200NEVERSEEN2", refund: 1_000, total: 1_000 });
    const tookMs = await settleWithin2sWindow(refund);
    const row = await notification(refund.id);
    expect(row).toMatchObject({ status: "REVIEW", errorCode: "TRANSACTION_MISMATCH" });
    // Decided after the 2 s window, not at the first attempt; retried meanwhile, never dead-lettered.
    expect(tookMs).toBeGreaterThanOrEqual(2_000);
    const kinds = row?.events.map((e) => [
      e.kind,
      (e.detail as { code?: string; outcome?: string }).code ?? (e.detail as { outcome?: string }).outcome,
    ]);
    expect(kinds?.filter(([kind]) => kind === "FAILED").every(([, code]) => code === "TRANSACTION_NOT_SEEN")).toBe(
      true,
    );
    expect(kinds?.some(([kind]) => kind === "FAILED")).toBe(true);
    expect(kinds?.at(-1)).toEqual(["REVIEW", "TRANSACTION_MISMATCH"]);
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", refundedTotal: 0, refunds: [] });
    expect((await applyQueue.getJob(refund.id))?.returnvalue).toMatchObject({ outcome: "TRANSACTION_MISMATCH" });
    expect((await deadQueue.getJobs(["waiting"])).filter((l) => l.data.notificationId === refund.id)).toEqual([]);
  }, 60_000);
});

/**
 * A refund naming the transaction another order was paid with: nothing it waits for can make that transaction its
 * order's, so it is decided at its first attempt, however long the window. Before, it was retried as
 * TRANSACTION_NOT_SEEN for the whole window (an hour by default) and then decided TRANSACTION_MISMATCH all the same.
 */
describe("a refund of another order's transaction", () => {
  it("is TRANSACTION_MISMATCH (REVIEW) at its first attempt, without a retry, within a 60 s window", async () => {
    const outTradeNo = await paidBy("4200OWNPAYMENT3");
    const otherOrder = await paidBy("4200OTHERPAYMENT3");
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId: "4200OTHERPAYMENT3",
      refund: 1_000,
      total: 1_000,
    });
    const started = Date.now();
    await withWorker(60, async () => {
      await parseQueue.add(PARSE_JOB_NAME, refund, { jobId: refund.id });
      await waitFor("refund settled", async () => (await notification(refund.id))?.status === "REVIEW", 20_000);
    });
    expect(Date.now() - started).toBeLessThan(20_000);
    const row = await notification(refund.id);
    expect(row).toMatchObject({ status: "REVIEW", errorCode: "TRANSACTION_MISMATCH" });
    expect(row?.events.map((e) => e.kind)).not.toContain("FAILED");
    expect(await orderOf(world.prisma, otherOrder)).toMatchObject({ refundedTotal: 0, refunds: [] });
  }, 60_000);
});

/**
 * A closed or abnormal refund delivered before its order's payment waits for it as a successful one does
 * (ORDER_NOT_PAID, nothing written): its transaction can only be compared with the order's once that payment is
 * applied. Before, it was recorded on the unpaid order at its first attempt (REFUND_CLOSED, REVIEW, refund.closed).
 */
describe("a closed refund whose order is not paid (yet)", () => {
  it("the payment never lands: dead-lettered ORDER_NOT_PAID at the window's end, as a successful refund is; nothing recorded", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId: "4200UNPAIDC1",
      outRefundNo: "RF-unpaid-closed",
      refund: 1_000,
      total: 1_000,
      status: "CLOSED",
    });
    const tookMs = await settleWithin2sWindow(refund);
    const row = await notification(refund.id);
    expect(row).toMatchObject({ status: "DEAD", errorCode: "ORDER_NOT_PAID" });
    // At the window's end, not at the first attempt; retried meanwhile.
    expect(tookMs).toBeGreaterThanOrEqual(2_000);
    const kinds = row?.events.map((e) => e.kind) ?? [];
    expect(kinds.filter((k) => k === "FAILED").length).toBeGreaterThanOrEqual(2);
    expect(kinds).not.toContain("REVIEW");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "NOTPAY", refunds: [] });
    const letters = (await deadQueue.getJobs(["waiting"])).filter((l) => l.data.notificationId === refund.id);
    expect(letters.map((l) => l.data.code)).toEqual(["ORDER_NOT_PAID"]);
  }, 60_000);
});
