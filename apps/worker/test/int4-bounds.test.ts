import { readFileSync } from "node:fs";
import { PARSE_JOB_NAME, publishJobSchema } from "@wpn/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { inline, orderOf, quietLog, seedOrder, stockOf, v3Payment, v3Refund, type World } from "./support/fixtures.ts";
import { closePipeline, notificationWithEvents, openPipeline, type Pipeline } from "./support/pipeline.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Sku.stock, OrderItem.quantity and the amounts are PostgreSQL `integer` (int4): a sum past 2^31−1 fails its statement
 * with SQLSTATE 22003 (numeric_value_out_of_range). The apply statements' sums that data can take there: a refund's
 * restock (stock + what the payment took: a shop that keeps an "unlimited" SKU at 2 147 483 647 refills it after the
 * sale) and a payment's quantity per SKU (the order's items of one SKU added up). refundedTotal cannot get there: a
 * refund that would take it above the order's total (itself an int4) is not counted (REFUND_AMOUNT_MISMATCH).
 * Before, each failed the whole statement: the refund or payment was dead-lettered (DB_DATA, on its first attempt)
 * and not recorded at all, although WeChat had moved the money.
 */
const INT4_MAX = 2_147_483_647;

let pipeline: Pipeline | undefined;
let world: World;
beforeAll(async () => {
  pipeline = await openPipeline("wint4", { A: 100, BIG: INT4_MAX });
  world = pipeline.world;
});
afterAll(() => closePipeline(pipeline));

/** An order of 1 000 fen with `items`, paid (applied inline): its out_trade_no and transaction id. */
async function paidOrder(items: Record<string, number>) {
  const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items });
  const transactionId = `4200${Math.random().toString().slice(2, 14)}`;
  const { apply } = await inline(world).deliver(v3Payment(world, { outTradeNo, transactionId, total: 1_000 }));
  expect(apply?.outcome).toBe("APPLIED");
  return { outTradeNo, transactionId };
}

/** The SQL block of the worker README that begins with `-- <title>` (README, "Stock not put back by a refund"). */
function readmeSql(title: string): string {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const block = [...readme.matchAll(/```sql\n([\s\S]*?)```/g)]
    .map((m) => m[1] ?? "")
    .find((b) => b.startsWith(`-- ${title}`));
  if (block === undefined) throw new Error(`no SQL block "-- ${title}" in the worker README`);
  return block;
}

/** The README's restock of one order, its psql variable `:'order_id'` bound. */
async function restockByHand(orderId: string): Promise<void> {
  await world.db.db.pool.query(readmeSql("Put back by hand").replaceAll(":'order_id'", "$1"), [orderId]);
}

/** The README's list of the refunds whose stock is still owed. */
async function restockOwed(): Promise<{ notificationId: string; orderId: string }[]> {
  const { rows } = await world.db.db.pool.query(readmeSql("Still to put back"));
  return rows.map((r: { notificationId: string; orderId: string }) => ({
    notificationId: r.notificationId,
    orderId: r.orderId,
  }));
}

describe("a full refund whose restock would take a SKU's stock past 2^31−1", () => {
  it("through the queues: the refund is recorded and counted, no stock moves, REVIEW with RESTOCK_OUT_OF_RANGE — no dead letter", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 2, BIG: 3 });
    // The shop refills its "unlimited" SKU after the sale: putting the 3 back would overflow.
    await world.prisma.sku.update({ where: { id: "BIG" }, data: { stock: INT4_MAX - 1 } });
    const before = await stockOf(world.prisma);
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId,
      outRefundNo: "RF-int4-1",
      refund: 1_000,
      total: 1_000,
    });
    const worker = await startWorker(world.config(), { logger: quietLog, healthPort: 0 });
    try {
      await pipeline?.parseQueue.add(PARSE_JOB_NAME, refund, { jobId: refund.id });
      await waitFor("refund settled", async () =>
        ["REVIEW", "DEAD", "APPLIED"].includes((await notificationWithEvents(world, refund.id))?.status ?? ""),
      );
    } finally {
      await worker.close();
    }
    const n = await notificationWithEvents(world, refund.id);
    expect({ status: n?.status, errorCode: n?.errorCode, attempts: n?.attempts }).toEqual({
      status: "REVIEW",
      errorCode: "RESTOCK_OUT_OF_RANGE",
      attempts: 1,
    });
    // The review names the SKUs whose stock could not take the restock.
    expect(n?.events.at(-1)).toMatchObject({
      kind: "REVIEW",
      detail: { outcome: "RESTOCK_OUT_OF_RANGE", restockedSkus: 0, stockOutOfRange: ["BIG"] },
    });
    expect(await pipeline?.deadQueue.count()).toBe(0);
    const order = await orderOf(world.prisma, outTradeNo);
    expect({ status: order.status, refundedTotal: order.refundedTotal }).toEqual({
      status: "REFUND",
      refundedTotal: 1_000,
    });
    expect(order.refunds).toMatchObject([{ outRefundNo: "RF-int4-1", status: "SUCCESS", reviewReason: null }]);
    // All or nothing: A, which had room, is not put back either.
    expect(order.movements.filter((m) => m.reason === "REFUND")).toEqual([]);
    expect(await stockOf(world.prisma)).toEqual(before);
  }, 30_000);

  it("the event says the refund succeeded and why its stock is not back, also when re-derived by a re-run (ALREADY)", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ BIG: 1 });
    await world.prisma.sku.update({ where: { id: "BIG" }, data: { stock: INT4_MAX } });
    const run = inline(world);
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId,
      outRefundNo: "RF-int4-2",
      refund: 1_000,
      total: 1_000,
    });
    const { apply, applyJob } = await run.deliver(refund);
    expect(apply).toMatchObject({ outcome: "RESTOCK_OUT_OF_RANGE", orderStatus: "REFUND" });
    expect(await run.apply(applyJob!)).toMatchObject({ outcome: "ALREADY" });
    expect(run.published.map((e) => [e.type, e.reviewReason, e.orderStatus, e.amount])).toEqual([
      ["refund.succeeded", "RESTOCK_OUT_OF_RANGE", "REFUND", 1_000],
      ["refund.succeeded", "RESTOCK_OUT_OF_RANGE", "REFUND", 1_000],
    ]);
    expect((await stockOf(world.prisma)).BIG).toBe(INT4_MAX);
  });

  it("its refund.succeeded event lists every SKU and quantity to put back, the same when a re-run (ALREADY) derives it again", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 2, BIG: 3 });
    await world.prisma.sku.update({ where: { id: "BIG" }, data: { stock: INT4_MAX - 1 } });
    const run = inline(world);
    const refund = v3Refund(world, { outTradeNo, transactionId, refund: 1_000, total: 1_000 });
    const { apply, applyJob } = await run.deliver(refund);
    expect(apply?.outcome).toBe("RESTOCK_OUT_OF_RANGE");
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    // All or nothing: A had room but was not put back either, so the merchant's systems are owed both — what the
    // review's timeline entry says (`restockByHand`). Before: the event said RESTOCK_OUT_OF_RANGE and nothing else.
    const owed = [
      { skuId: "A", quantity: 2 },
      { skuId: "BIG", quantity: 3 },
    ];
    expect(run.published.map((e) => publishJobSchema.parse(e))).toMatchObject([
      { type: "refund.succeeded", reviewReason: "RESTOCK_OUT_OF_RANGE", restockByHand: owed },
      { type: "refund.succeeded", reviewReason: "RESTOCK_OUT_OF_RANGE", restockByHand: owed },
    ]);
    const entry = await world.prisma.notificationEvent.findFirstOrThrow({
      where: { notificationId: refund.id, kind: "REVIEW" },
    });
    expect(entry.detail).toMatchObject({ restockByHand: owed });
    // Any other refund event has none.
    const other = await paidOrder({ A: 1 });
    await run.deliver(v3Refund(world, { ...other, refund: 1_000, total: 1_000 }));
    expect(run.published.at(-1)).toMatchObject({ type: "refund.succeeded", reviewReason: null, restockByHand: null });
  });

  it("its review names every SKU and quantity to put back, and the README's SQL puts them back once the stock allows", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 2, BIG: 3 });
    await world.prisma.sku.update({ where: { id: "BIG" }, data: { stock: INT4_MAX - 1 } });
    const run = inline(world);
    const refund = v3Refund(world, { outTradeNo, transactionId, refund: 1_000, total: 1_000 });
    const { apply, applyJob } = await run.deliver(refund);
    expect(apply?.outcome).toBe("RESTOCK_OUT_OF_RANGE");
    const { id: orderId } = await orderOf(world.prisma, outTradeNo);
    // All or nothing: A was not put back either, so the review names it too, with what each SKU is owed.
    // Before: `stockOutOfRange: ["BIG"]` alone — no quantities, and nothing said A was owed its 2.
    const entry = await world.prisma.notificationEvent.findFirstOrThrow({
      where: { notificationId: refund.id, kind: "REVIEW" },
    });
    expect(entry.detail).toMatchObject({
      orderId,
      stockOutOfRange: ["BIG"],
      restockByHand: [
        { skuId: "A", quantity: 2 },
        { skuId: "BIG", quantity: 3 },
      ],
    });
    // No later run restocks it: the refund is settled (a replay is ALREADY).
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    expect(await restockOwed()).toContainEqual({ notificationId: refund.id, orderId });

    // The shop brings BIG's stock back to a number it can count up from, then restocks by hand as the README says.
    await world.prisma.sku.update({ where: { id: "BIG" }, data: { stock: 1_000 } });
    const before = await stockOf(world.prisma);
    await restockByHand(orderId);
    await restockByHand(orderId);
    const after = await stockOf(world.prisma);
    expect([after.A, after.BIG]).toEqual([(before.A ?? 0) + 2, 1_003]);
    expect((await orderOf(world.prisma, outTradeNo)).movements.filter((m) => m.reason === "REFUND")).toHaveLength(2);
    expect(await restockOwed()).not.toContainEqual({ notificationId: refund.id, orderId });
  });

  it("a restock that reaches 2^31−1 exactly is applied", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ BIG: 5 });
    await world.prisma.sku.update({ where: { id: "BIG" }, data: { stock: INT4_MAX - 5 } });
    const refund = v3Refund(world, { outTradeNo, transactionId, refund: 1_000, total: 1_000 });
    const { apply } = await inline(world).deliver(refund);
    expect(apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    expect((await stockOf(world.prisma)).BIG).toBe(INT4_MAX);
  });
});

describe("a payment whose order's items of one SKU add up past 2^31−1", () => {
  it("is OUT_OF_STOCK (recorded, PAYMENT_REVIEW), not a DB_DATA dead letter: no SKU can hold that many", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const order = await orderOf(world.prisma, outTradeNo);
    // Two more lines of SKU BIG (the fixture takes one line per SKU).
    await world.prisma.orderItem.createMany({
      data: [
        { orderId: order.id, skuId: "BIG", quantity: 1_500_000_000 },
        { orderId: order.id, skuId: "BIG", quantity: 1_500_000_000 },
      ],
    });
    await world.prisma.sku.update({ where: { id: "BIG" }, data: { stock: INT4_MAX } });
    const before = await stockOf(world.prisma);
    const transactionId = "4200INT4PAY0001";
    const { apply } = await inline(world).deliver(v3Payment(world, { outTradeNo, transactionId, total: 1_000 }));
    expect(apply).toMatchObject({ outcome: "OUT_OF_STOCK", orderStatus: "PAYMENT_REVIEW" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "OUT_OF_STOCK",
      transactionId,
      movements: [],
    });
    expect(await stockOf(world.prisma)).toEqual(before);
  });
});
