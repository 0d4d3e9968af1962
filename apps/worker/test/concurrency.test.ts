import { createDb, type Db } from "@wpn/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createWorld,
  inline,
  orderOf,
  seedOrder,
  seedSkus,
  stockOf,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";

/**
 * Two workers on the same job at the same moment (BullMQ re-ran a job whose worker looked dead but was not;
 * WeChat's duplicate deliveries under different ids): each "worker" here has its own connection pool, as
 * separate processes would, and both start the statement in the same tick. Constraints and conditional
 * updates must leave exactly one effect.
 */
let world: World;
let pools: Db[];
beforeAll(async () => {
  world = await createWorld("wconc");
  pools = [0, 1, 2, 3].map(() => createDb({ url: world.db.url, poolMax: 4 }));
  await seedSkus(world.prisma, { A: 10_000, B: 10_000, S: 30 });
});
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  await world.cleanup();
});

const workers = () => pools.map((p) => inline(world, {}, p.prisma));

describe("same notification, two workers at once", () => {
  it("one effect, whoever wins; the other answers ALREADY (20 rounds)", async () => {
    const before = await stockOf(world.prisma);
    const [w1, w2] = workers();
    for (let round = 0; round < 20; round++) {
      const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1, B: 2 } });
      const { applyJob } = await w1!.parse(v3Payment(world, { outTradeNo: otn }));
      const outcomes = (await Promise.all([w1!.apply(applyJob!), w2!.apply(applyJob!)])).map((r) => r.outcome).sort();
      expect(outcomes).toEqual(["ALREADY", "APPLIED"]);
      const order = await orderOf(world.prisma, otn);
      expect(order.status).toBe("SUCCESS");
      expect(order.movements).toHaveLength(2);
    }
    const after = await stockOf(world.prisma);
    expect(after.A).toBe((before.A ?? 0) - 20);
    expect(after.B).toBe((before.B ?? 0) - 40);
  });

  it("four notifications with different ids for one transaction at once: one APPLIED, three DUPLICATE", async () => {
    const before = await stockOf(world.prisma);
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 3 } });
    const ws = workers();
    const jobs = ws.map(() => v3Payment(world, { outTradeNo: otn, transactionId: "4200007777" }));
    const applyJobs = await Promise.all(jobs.map(async (j, i) => (await ws[i]!.parse(j)).applyJob!));
    const outcomes = (await Promise.all(applyJobs.map((j, i) => ws[i]!.apply(j)))).map((r) => r.outcome).sort();
    expect(outcomes).toEqual(["APPLIED", "DUPLICATE", "DUPLICATE", "DUPLICATE"]);
    expect((await stockOf(world.prisma)).A).toBe((before.A ?? 0) - 3);
  });

  it("a refund racing its payment ends refunded and restocked, whichever commits first", async () => {
    const before = await stockOf(world.prisma);
    const [w1, w2] = workers();
    for (let round = 0; round < 10; round++) {
      const otn = await seedOrder(world, { amountTotal: 300, items: { A: 1, B: 1 } });
      const txn = `42000088${round}`;
      const pay = (await w1!.parse(v3Payment(world, { outTradeNo: otn, transactionId: txn, total: 300 }))).applyJob!;
      const refund = (
        await w2!.parse(v3Refund(world, { outTradeNo: otn, transactionId: txn, refund: 300, total: 300 }))
      ).applyJob!;
      const [, refundResult] = await Promise.allSettled([w1!.apply(pay), w2!.apply(refund)]);
      // The refund either ran after the payment, or found it unpaid and would be retried by the queue.
      if (refundResult.status === "rejected") {
        expect(refundResult.reason).toMatchObject({ code: "ORDER_NOT_PAID" });
        expect((await w2!.apply(refund)).outcome).toBe("APPLIED");
      }
      expect(await orderOf(world.prisma, otn)).toMatchObject({ status: "REFUND", refundedTotal: 300 });
    }
    expect(await stockOf(world.prisma)).toEqual(before);
  });
});

describe("partial refunds of one order at once", () => {
  it("never add up past the order total: 8 × 250 on a 1 000 order → 4 counted, 4 recorded for review", async () => {
    const before = await stockOf(world.prisma);
    const otn = await seedOrder(world, { amountTotal: 1_000, items: { A: 2 } });
    const txn = "4200009999";
    const ws = workers();
    await ws[0]!.deliver(v3Payment(world, { outTradeNo: otn, transactionId: txn, total: 1_000 }));
    const jobs = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const refund = v3Refund(world, { outTradeNo: otn, transactionId: txn, refund: 250, total: 1_000 });
        return (await ws[i % 4]!.parse(refund)).applyJob!;
      }),
    );
    // An order contended past the statement's own retries (ORDER_CONTENDED) is retried, as the queue would.
    const applyUntilDone = async (i: number): Promise<string> => {
      for (;;) {
        try {
          return (await ws[i % 4]!.apply(jobs[i]!)).outcome;
        } catch (error) {
          expect(error).toMatchObject({ code: "ORDER_CONTENDED" });
        }
      }
    };
    const outcomes = await Promise.all(jobs.map((_, i) => applyUntilDone(i)));
    // Before: 8 APPLIED, refundedTotal 2 000.
    expect(outcomes.sort()).toEqual([...Array(4).fill("APPLIED"), ...Array(4).fill("REFUND_AMOUNT_MISMATCH")]);
    const order = await orderOf(world.prisma, otn);
    expect(order).toMatchObject({ status: "REFUND", refundedTotal: 1_000 });
    expect(order.refunds.filter((r) => r.reviewReason === "REFUND_AMOUNT_MISMATCH")).toHaveLength(4);
    expect(await stockOf(world.prisma)).toEqual(before);
  });
});

describe("many orders competing for little stock", () => {
  it("stock never goes below zero; every order is either fully served (SUCCESS) or untouched (OUT_OF_STOCK)", async () => {
    const orders = await Promise.all(
      Array.from({ length: 24 }, () => seedOrder(world, { amountTotal: 100, items: { S: 2, A: 1 } })),
    );
    const ws = workers();
    const parsed = await Promise.all(
      orders.map(async (otn, i) => (await ws[i % 4]!.parse(v3Payment(world, { outTradeNo: otn }))).applyJob!),
    );
    const results = await Promise.all(parsed.map((j, i) => ws[i % 4]!.apply(j)));
    const served = results.filter((r) => r.outcome === "APPLIED").length;
    expect(served).toBe(15); // 30 units, 2 per order
    expect(results.filter((r) => r.outcome === "OUT_OF_STOCK")).toHaveLength(9);
    expect((await stockOf(world.prisma)).S).toBe(0);
    for (const otn of orders) {
      const o = await orderOf(world.prisma, otn);
      expect(o.movements).toHaveLength(o.status === "SUCCESS" ? 2 : 0);
    }
  });
});
