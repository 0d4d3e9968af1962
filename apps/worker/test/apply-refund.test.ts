import { paymentStatement, type RefundFacts, type RefundResultRow, refundStatement } from "@wpn/db";
import { whileRowChanges } from "@wpn/testing";
import { MAX_OUT_REFUND_NO_LENGTH, MAX_OUT_TRADE_NO_LENGTH } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refundEvent } from "../src/domain/publish-events.ts";
import {
  createWorld,
  inline,
  orderOf,
  seedOrder,
  seedSkus,
  stockOf,
  v2Refund,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";

let world: World;
beforeAll(async () => {
  world = await createWorld("wrefund");
  await seedSkus(world.prisma, { A: 100, B: 100, C: 0 });
});
afterAll(() => world.cleanup());

/** A paid order (2×A, 1×B, 1 000 fen) and its transaction id. */
async function paidOrder(items: Record<string, number> = { A: 2, B: 1 }, amountTotal = 1_000) {
  const outTradeNo = await seedOrder(world, { amountTotal, items });
  const transactionId = `4200${Math.random().toString().slice(2, 14)}`;
  const { apply } = await inline(world).deliver(v3Payment(world, { outTradeNo, transactionId, total: amountTotal }));
  return { outTradeNo, transactionId, outcome: apply?.outcome };
}

describe("refund success", () => {
  it("a full refund: Refund row, order REFUND, refundedTotal = total, the payment's stock restored (policy full)", async () => {
    const before = await stockOf(world.prisma);
    const { outTradeNo, transactionId } = await paidOrder();
    const job = v3Refund(world, { outTradeNo, transactionId, outRefundNo: "RF-full-1", refund: 1_000, total: 1_000 });
    const { apply } = await inline(world).deliver(job);
    expect(apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    const order = await orderOf(world.prisma, outTradeNo);
    expect(order).toMatchObject({ status: "REFUND", refundedTotal: 1_000 });
    expect(order.refunds).toHaveLength(1);
    expect(order.refunds[0]).toMatchObject({
      outRefundNo: "RF-full-1",
      status: "SUCCESS",
      amountRefund: 1_000,
      notificationId: job.id,
    });
    expect(
      order.movements
        .filter((m) => m.reason === "REFUND")
        .map((m) => [m.skuId, m.delta])
        .sort(),
    ).toEqual([
      ["A", 2],
      ["B", 1],
    ]);
    expect(await stockOf(world.prisma)).toEqual(before);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({
      status: "APPLIED",
      eventType: "REFUND.SUCCESS",
      outRefundNo: "RF-full-1",
      outTradeNo,
    });
  });

  it("partial refunds add up; the order becomes REFUND (and is restocked) only when they reach the total", async () => {
    const before = await stockOf(world.prisma);
    const { outTradeNo, transactionId } = await paidOrder();
    const run = inline(world);
    const part1 = { outTradeNo, transactionId, outRefundNo: "RF-part-1", refundId: "5000RF-part-1", refund: 400 };
    const first = await run.deliver(v3Refund(world, { ...part1, total: 1_000 }));
    expect(first.apply).toMatchObject({ outcome: "APPLIED", orderStatus: "SUCCESS" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", refundedTotal: 400 });
    expect((await stockOf(world.prisma)).A).toBe((before.A ?? 0) - 2);

    // The same refund delivered again under another notification id counts once.
    const again = await run.deliver(v3Refund(world, { ...part1, total: 1_000 }));
    expect(again.apply?.outcome).toBe("DUPLICATE");
    expect((await orderOf(world.prisma, outTradeNo)).refundedTotal).toBe(400);

    const second = await run.deliver(
      v2Refund(world, { outTradeNo, transactionId, outRefundNo: "RF-part-2", refund: 600, total: 1_000 }),
    );
    expect(second.apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "REFUND", refundedTotal: 1_000 });
    expect(await stockOf(world.prisma)).toEqual(before);
  });

  it("an order another system already set to REFUND: restocked once, by the refund that completes its refunds", async () => {
    const before = await stockOf(world.prisma);
    const { outTradeNo, transactionId } = await paidOrder({ A: 5 }, 1_000);
    // The merchant's back office marks the order REFUND when it asks WeChat for a refund (statuses set by another
    // system are expected: UNEXPECTED_ORDER_STATUS).
    await world.prisma.order.updateMany({ where: { outTradeNo }, data: { status: "REFUND" } });
    const run = inline(world);
    const refund = (outRefundNo: string, amount: number) =>
      v3Refund(world, { outTradeNo, transactionId, outRefundNo, refund: amount, total: 1_000 });
    expect((await run.deliver(refund("RF-bo-1", 100))).apply).toMatchObject({
      outcome: "APPLIED",
      orderStatus: "REFUND",
    });
    // Before: 100 of 1 000 fen refunded put the whole order back (5×A).
    const partly = await orderOf(world.prisma, outTradeNo);
    expect(partly.refundedTotal).toBe(100);
    expect(partly.movements.filter((m) => m.reason === "REFUND")).toEqual([]);
    expect((await stockOf(world.prisma)).A).toBe((before.A ?? 0) - 5);

    expect((await run.deliver(refund("RF-bo-2", 900))).apply).toMatchObject({
      outcome: "APPLIED",
      orderStatus: "REFUND",
    });
    const full = await orderOf(world.prisma, outTradeNo);
    expect(full.refundedTotal).toBe(1_000);
    expect(full.movements.filter((m) => m.reason === "REFUND").map((m) => [m.skuId, m.delta])).toEqual([["A", 5]]);
    expect(await stockOf(world.prisma)).toEqual(before);
  });

  it("REFUND_RESTOCK_POLICY=none refunds the money and leaves the stock", async () => {
    const before = await stockOf(world.prisma);
    const { outTradeNo, transactionId } = await paidOrder({ B: 3 }, 500);
    await inline(world, { REFUND_RESTOCK_POLICY: "none" }).deliver(
      v3Refund(world, { outTradeNo, transactionId, refund: 500, total: 500 }),
    );
    expect((await orderOf(world.prisma, outTradeNo)).status).toBe("REFUND");
    expect((await stockOf(world.prisma)).B).toBe((before.B ?? 0) - 3);
  });

  it("refunding an OUT_OF_STOCK order (its payment took no stock) restores nothing", async () => {
    const before = await stockOf(world.prisma);
    const { outTradeNo, transactionId, outcome } = await paidOrder({ A: 1, C: 1 }, 200);
    expect(outcome).toBe("OUT_OF_STOCK");
    const { apply } = await inline(world).deliver(
      v3Refund(world, { outTradeNo, transactionId, refund: 200, total: 200 }),
    );
    expect(apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    expect(await stockOf(world.prisma)).toEqual(before);
    expect((await orderOf(world.prisma, outTradeNo)).movements).toHaveLength(0);
  });
});

describe("abnormal and closed refunds are recorded and surfaced, with no stock change", () => {
  const cases = [
    ["v3 REFUND.ABNORMAL", "ABNORMAL", "REFUND_ABNORMAL", "REFUND.ABNORMAL"],
    ["v3 REFUND.CLOSED", "CLOSED", "REFUND_CLOSED", "REFUND.CLOSED"],
    ["v2 refund_status CHANGE", "CHANGE", "REFUND_ABNORMAL", "REFUND.ABNORMAL"],
    ["v2 refund_status REFUNDCLOSE", "REFUNDCLOSE", "REFUND_CLOSED", "REFUND.CLOSED"],
  ] as const;
  for (const [name, status, outcome, eventType] of cases) {
    it(name, async () => {
      const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 100);
      const stock = await stockOf(world.prisma);
      const outRefundNo = `RF-${status}-${Math.random().toString(36).slice(2, 8)}`;
      const job =
        status === "CHANGE" || status === "REFUNDCLOSE"
          ? v2Refund(world, { outTradeNo, transactionId, outRefundNo, refund: 100, total: 100, refundStatus: status })
          : v3Refund(world, { outTradeNo, transactionId, outRefundNo, refund: 100, total: 100, status });
      const { apply } = await inline(world).deliver(job);
      expect(apply?.outcome).toBe(outcome);
      const order = await orderOf(world.prisma, outTradeNo);
      expect(order).toMatchObject({ status: "SUCCESS", refundedTotal: 0 });
      expect(order.refunds).toMatchObject([
        { outRefundNo, status: outcome === "REFUND_ABNORMAL" ? "ABNORMAL" : "CLOSED" },
      ]);
      expect(await stockOf(world.prisma)).toEqual(stock);
      expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({
        status: "REVIEW",
        errorCode: outcome,
        eventType,
      });
    });
  }

  it("an ABNORMAL refund that later succeeds is counted once, when it succeeds", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 100);
    const run = inline(world);
    const refund = {
      outTradeNo,
      transactionId,
      outRefundNo: "RF-late-ok",
      refundId: "5000RF-late-ok",
      refund: 100,
      total: 100,
    };
    await run.deliver(v3Refund(world, { ...refund, status: "ABNORMAL" }));
    const { apply } = await run.deliver(v3Refund(world, refund));
    expect(apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    const order = await orderOf(world.prisma, outTradeNo);
    expect(order.refunds).toMatchObject([{ outRefundNo: "RF-late-ok", status: "SUCCESS" }]);
    expect(order.refundedTotal).toBe(100);
  });
});

describe("CLOSED is final, as at WeChat (a refund closed is never reopened: a new one needs a new out_refund_no)", () => {
  it("a late ABNORMAL after CLOSED is DUPLICATE: the row stays CLOSED, no review, no refund.abnormal", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 1_000);
    const run = inline(world);
    const refund = { outTradeNo, transactionId, outRefundNo: "RF-closed-late", refundId: "5000closedlate" };
    const closed = { ...refund, refund: 500, total: 1_000, status: "CLOSED" as const };
    expect((await run.deliver(v3Refund(world, closed))).apply?.outcome).toBe("REFUND_CLOSED");
    const published = run.published.length;
    const late = v3Refund(world, { ...closed, status: "ABNORMAL" });
    // Before: REFUND_ABNORMAL — the row moved back to ABNORMAL, the notification REVIEW, refund.abnormal published
    // after refund.closed.
    expect((await run.deliver(late)).apply?.outcome).toBe("DUPLICATE");
    expect((await orderOf(world.prisma, outTradeNo)).refunds).toMatchObject([
      { outRefundNo: "RF-closed-late", status: "CLOSED" },
    ]);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: late.id } })).toMatchObject({
      status: "DUPLICATE",
      errorCode: null,
    });
    expect(run.published).toHaveLength(published);
  });

  it("also when the CLOSED delivery commits while the ABNORMAL one's statement runs (after its snapshot)", async () => {
    const a = await paidOrder({ A: 1 }, 100);
    const run = inline(world);
    const job = v3Refund(world, {
      ...a,
      outRefundNo: "RF-closed-race",
      refundId: "5000closedrace",
      refund: 100,
      total: 100,
      status: "ABNORMAL",
    });
    const { applyJob } = await run.parse(job);
    if (!applyJob) throw new Error("the refund should have an apply job");
    const insertClosed = `INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", "orderId", status, "amountRefund", "amountTotal", "updatedAt")
      VALUES ($1, '5000closedrace', $2, (SELECT id FROM "Order" WHERE "outTradeNo" = $2), 'CLOSED', 100, 100, now())`;
    const result = await whileRowChanges(world.db, insertClosed, ["RF-closed-race", a.outTradeNo], () =>
      run.apply(applyJob),
    );
    expect(result.outcome).toBe("DUPLICATE");
    expect(await world.prisma.refund.findMany({ where: { outTradeNo: a.outTradeNo } })).toMatchObject([
      { outRefundNo: "RF-closed-race", status: "CLOSED" },
    ]);
  });

  it("a SUCCESS after CLOSED (not in WeChat's lifecycle, but its word that the money went back) is counted", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 1_000);
    const run = inline(world);
    const refund = { outTradeNo, transactionId, outRefundNo: "RF-closed-ok", refundId: "5000closedok" };
    await run.deliver(v3Refund(world, { ...refund, refund: 1_000, total: 1_000, status: "CLOSED" }));
    const success = await run.deliver(v3Refund(world, { ...refund, refund: 1_000, total: 1_000 }));
    expect(success.apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      refundedTotal: 1_000,
      refunds: [{ outRefundNo: "RF-closed-ok", status: "SUCCESS" }],
    });
  });
});

describe("APIv2 refunds", () => {
  it("a refund notified CHANGE, then SUCCESS is counted once, when it succeeds (two notifications)", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 100);
    const run = inline(world);
    const spec = {
      outTradeNo,
      transactionId,
      outRefundNo: "RF-v2-late-ok",
      refundId: "5000RF-v2-late-ok",
      refund: 100,
      total: 100,
    };
    const abnormal = v2Refund(world, { ...spec, refundStatus: "CHANGE" });
    const success = v2Refund(world, spec);
    expect(success.id).not.toBe(abnormal.id);
    expect((await run.deliver(abnormal)).apply?.outcome).toBe("REFUND_ABNORMAL");
    expect((await run.deliver(success)).apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    const order = await orderOf(world.prisma, outTradeNo);
    expect(order.refunds).toMatchObject([{ outRefundNo: "RF-v2-late-ok", status: "SUCCESS" }]);
    expect(order.refundedTotal).toBe(100);
  });

  it("an APIv2 key rotated after the refund was queued: its req_info opens with WECHATPAY_APIV2_KEY_PREVIOUS", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 100);
    // Encrypted with the key of before the rotation (the world's), applied by workers that run with the new one.
    const job = v2Refund(world, { outTradeNo, transactionId, outRefundNo: "RF-v2-rotated", refund: 100, total: 100 });
    const rotated = { WECHATPAY_APIV2_KEY: "z".repeat(32) };
    await expect(inline(world, rotated).parse(job)).rejects.toMatchObject({ code: "DECRYPT_FAILED" });
    const { apply } = await inline(world, {
      ...rotated,
      WECHATPAY_APIV2_KEY_PREVIOUS: world.merchant.apiV2Key,
    }).deliver(job);
    expect(apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
  });

  it("the unsigned outer XML decides nothing: return_code FAIL or another mch_id around a genuine req_info", async () => {
    for (const [outer, outRefundNo] of [
      [{ returnCode: "FAIL" }, "RF-v2-outer-fail"],
      [{ mchid: "1900000999" }, "RF-v2-outer-mchid"],
    ] as const) {
      const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 100);
      const job = v2Refund(world, { outTradeNo, transactionId, outRefundNo, refund: 100, total: 100, ...outer });
      const { apply } = await inline(world).deliver(job);
      expect(apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
      expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "REFUND", refundedTotal: 100 });
    }
  });
});

describe("out-of-order delivery", () => {
  it("a refund before its payment is retried (ORDER_NOT_PAID) and ends in the same state as in-order delivery", async () => {
    const run = inline(world);
    const stock0 = await stockOf(world.prisma);
    // Out of order: refund first.
    const late = await seedOrder(world, { amountTotal: 700, items: { A: 1, B: 2 } });
    const refundJob = v3Refund(world, {
      outTradeNo: late,
      transactionId: "4200000901",
      outRefundNo: "RF-ooo-1",
      refund: 700,
      total: 700,
    });
    const { applyJob } = await run.parse(refundJob);
    await expect(run.apply(applyJob!)).rejects.toMatchObject({ code: "ORDER_NOT_PAID", policy: "window" });
    expect(await orderOf(world.prisma, late)).toMatchObject({ status: "NOTPAY", refundedTotal: 0 });
    await run.deliver(v3Payment(world, { outTradeNo: late, transactionId: "4200000901", total: 700 }));
    expect((await run.apply(applyJob!)).outcome).toBe("APPLIED");

    // In order, for comparison.
    const ordered = await seedOrder(world, { amountTotal: 700, items: { A: 1, B: 2 } });
    await run.deliver(v3Payment(world, { outTradeNo: ordered, transactionId: "4200000902", total: 700 }));
    await run.deliver(
      v3Refund(world, {
        outTradeNo: ordered,
        transactionId: "4200000902",
        outRefundNo: "RF-ooo-2",
        refund: 700,
        total: 700,
      }),
    );

    const shape = async (otn: string) => {
      const o = await orderOf(world.prisma, otn);
      return {
        status: o.status,
        refundedTotal: o.refundedTotal,
        refunds: o.refunds.map((r) => [r.status, r.amountRefund]),
        movements: o.movements.map((m) => [m.skuId, m.delta, m.reason]).sort(),
      };
    };
    expect(await shape(late)).toEqual(await shape(ordered));
    expect(await stockOf(world.prisma)).toEqual(stock0);
  });

  it("a CLOSED refund before its payment waits (ORDER_NOT_PAID) like a successful one, then is recorded as in order", async () => {
    const run = inline(world);
    const outTradeNo = await seedOrder(world, { amountTotal: 700, items: { A: 1 } });
    const closed = { outTradeNo, transactionId: "4200000911", outRefundNo: "RF-ooo-closed", refund: 700, total: 700 };
    const { applyJob } = await run.parse(v3Refund(world, { ...closed, status: "CLOSED" }));
    // Before: REFUND_CLOSED at once — a CLOSED row on an order whose payment (and so transaction) was not known.
    await expect(run.apply(applyJob!, { windowOver: false })).rejects.toMatchObject({
      code: "ORDER_NOT_PAID",
      policy: "window",
    });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "NOTPAY", refunds: [] });
    expect(run.published).toEqual([]);
    await run.deliver(v3Payment(world, { outTradeNo, transactionId: "4200000911", total: 700 }));
    expect((await run.apply(applyJob!, { windowOver: false })).outcome).toBe("REFUND_CLOSED");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "SUCCESS",
      refundedTotal: 0,
      refunds: [{ outRefundNo: "RF-ooo-closed", status: "CLOSED", transactionId: "4200000911" }],
    });
    expect(run.published.map((e) => e.type)).toEqual(["payment.succeeded", "refund.closed"]);
  });

  it("an abnormal refund before a payment of another transaction is compared with it once it lands: TRANSACTION_NOT_SEEN, then TRANSACTION_MISMATCH", async () => {
    const run = inline(world);
    const outTradeNo = await seedOrder(world, { amountTotal: 700, items: { A: 1 } });
    const abnormal = { outTradeNo, transactionId: "4200000921", outRefundNo: "RF-ooo-abn", refund: 700, total: 700 };
    const { applyJob } = await run.parse(v2Refund(world, { ...abnormal, refundStatus: "CHANGE" }));
    // Before: REFUND_ABNORMAL at once, recorded on this order though its transaction is not the order's.
    await expect(run.apply(applyJob!, { windowOver: false })).rejects.toMatchObject({ code: "ORDER_NOT_PAID" });
    await run.deliver(v3Payment(world, { outTradeNo, transactionId: "4200000922", total: 700 }));
    await expect(run.apply(applyJob!, { windowOver: false })).rejects.toMatchObject({ code: "TRANSACTION_NOT_SEEN" });
    expect((await run.apply(applyJob!, { windowOver: true })).outcome).toBe("TRANSACTION_MISMATCH");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", refunds: [] });
  });

  it("a refund for an unknown order is ORDER_NOT_FOUND (retried within the window)", async () => {
    const run = inline(world);
    const { applyJob } = await run.parse(
      v3Refund(world, { outTradeNo: "T-no-such", transactionId: "4200000999", refund: 1, total: 1 }),
    );
    await expect(run.apply(applyJob!)).rejects.toMatchObject({ code: "ORDER_NOT_FOUND" });
  });

  it("an out_trade_no or out_refund_no longer than WeChat's numbers allow is PAYLOAD_INVALID at parse (v3, v2)", async () => {
    const refund = { transactionId: "4200000000000000000000000000", refund: 100, total: 100 };
    const tooLong = [
      { outTradeNo: "T".repeat(MAX_OUT_TRADE_NO_LENGTH + 1) },
      { outTradeNo: "T-refund", outRefundNo: "R".repeat(MAX_OUT_REFUND_NO_LENGTH + 1) },
    ];
    for (const numbers of tooLong) {
      for (const job of [v3Refund(world, { ...refund, ...numbers }), v2Refund(world, { ...refund, ...numbers })]) {
        await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
      }
    }
  });

  it("a SUCCESS APIv3 refund without success_time is PAYLOAD_INVALID at parse (absent, null or empty), never recorded without its time; an APIv2 one (the field is optional there) is opened", async () => {
    const refund = { outTradeNo: "T-no-success-time", transactionId: "4200000997", refund: 1, total: 1 };
    const jobs = [undefined, null, ""].map((successTime) =>
      v3Refund(world, { ...refund, fields: { success_time: successTime } }),
    );
    for (const job of jobs) {
      await expect(inline(world).parse(job), job.id).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
    }
    const v2 = await inline(world).parse(v2Refund(world, { ...refund, successTime: null }));
    expect(v2.applyJob).not.toBeNull();
    // A closed or abnormal refund has no success_time, and is still opened.
    const closed = await inline(world).parse(v3Refund(world, { ...refund, status: "CLOSED" }));
    expect(closed.applyJob).not.toBeNull();
    const change = await inline(world).parse(v2Refund(world, { ...refund, refundStatus: "CHANGE", successTime: null }));
    expect(change.applyJob).not.toBeNull();
  });

  it("a v2 refund success_time not exactly yyyy-MM-dd HH:mm:ss, or not a real time, is PAYLOAD_INVALID at parse", async () => {
    const refund = { outTradeNo: "T-bad-success-time", transactionId: "4200000996", refund: 1, total: 1 };
    for (const successTime of ["20171125153617", "2017-11-25T15:36:17", "2017-1125 153617", "2017-02-29 15:36:17"]) {
      await expect(inline(world).parse(v2Refund(world, { ...refund, successTime })), successTime).rejects.toMatchObject(
        {
          code: "PAYLOAD_INVALID",
          policy: "stop",
        },
      );
    }
  });

  it("a v2 refund for a merchant without an APIv2 key cannot be opened: APIV2_KEY_MISSING, retried within the window", async () => {
    const job = v2Refund(world, { outTradeNo: "T-no-v2-key", transactionId: "4200000998", refund: 1, total: 1 });
    await expect(inline(world, { WECHATPAY_APIV2_KEY: "" }).parse(job)).rejects.toMatchObject({
      code: "APIV2_KEY_MISSING",
      policy: "window",
    });
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({
      status: "FAILED",
      errorCode: "APIV2_KEY_MISSING",
      eventType: "REFUND.UNKNOWN",
    });
  });

  it("a refund naming another transaction than the order's is flagged TRANSACTION_MISMATCH", async () => {
    const { outTradeNo } = await paidOrder({ A: 1 }, 100);
    const { apply } = await inline(world).deliver(
      v3Refund(world, { outTradeNo, transactionId: "4200000000bad", refund: 100, total: 100 }),
    );
    expect(apply?.outcome).toBe("TRANSACTION_MISMATCH");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", refundedTotal: 0, refunds: [] });
  });
});

describe("the refund of a second charge (DUPLICATE_PAYMENT) is recorded, not counted (DUPLICATE_PAYMENT_REFUNDED)", () => {
  /** An order of 1 000 fen paid by A, then charged again by B (DUPLICATE_PAYMENT, whose payment.review asks to refund B). */
  async function chargedTwice(tag: string, second = 1_000) {
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const [a, b] = [`4200DUPA${tag}`, `4200DUPB${tag}`];
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo, transactionId: a, total: 1_000 }))).apply?.outcome).toBe(
      "APPLIED",
    );
    const dup = await run.deliver(v3Payment(world, { outTradeNo, transactionId: b, total: second }));
    expect(dup.apply?.outcome).toBe("DUPLICATE_PAYMENT");
    return { outTradeNo, a, b };
  }

  it("the refund of B: a Refund row naming B, refundedTotal and stock untouched, REVIEW, refund.review", async () => {
    const { outTradeNo, a, b } = await chargedTwice("1");
    const stock = await stockOf(world.prisma);
    const run = inline(world);
    const refundB = v3Refund(world, {
      outTradeNo,
      transactionId: b,
      outRefundNo: "RF-dupB",
      refundId: "5000dupB",
      refund: 1_000,
      total: 1_000,
    });
    const { apply, applyJob } = await run.deliver(refundB);
    // Before: TRANSACTION_MISMATCH — no Refund row, no event: nothing showed the second charge was paid back.
    // B refunded in full, the order's DUPLICATE_PAYMENT review is over: SUCCESS again.
    expect(apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "SUCCESS" });
    const order = await orderOf(world.prisma, outTradeNo);
    expect(order).toMatchObject({
      status: "SUCCESS",
      reviewReason: null,
      transactionId: a,
      refundedTotal: 0,
    });
    expect(order.refunds).toMatchObject([
      {
        outRefundNo: "RF-dupB",
        transactionId: b,
        status: "SUCCESS",
        amountRefund: 1_000,
        reviewReason: "DUPLICATE_PAYMENT_REFUNDED",
      },
    ]);
    expect(order.movements.filter((m) => m.reason === "REFUND")).toEqual([]);
    expect(await stockOf(world.prisma)).toEqual(stock);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: refundB.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "DUPLICATE_PAYMENT_REFUNDED",
      transactionId: b,
    });
    const event = run.published.at(-1);
    expect(event).toMatchObject({
      type: "refund.review",
      reviewReason: "DUPLICATE_PAYMENT_REFUNDED",
      transactionId: b,
      outRefundNo: "RF-dupB",
      amount: 1_000,
      orderStatus: "SUCCESS",
    });
    // A re-run derives the same event; the same refund delivered again is DUPLICATE.
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    expect(run.published.at(-1)).toEqual(event);
    const again = v3Refund(world, {
      outTradeNo,
      transactionId: b,
      outRefundNo: "RF-dupB",
      refundId: "5000dupB",
      refund: 1_000,
      total: 1_000,
    });
    expect((await run.deliver(again)).apply?.outcome).toBe("DUPLICATE");

    // The payment the order kept is refunded as ever: counted, and its stock comes back.
    const refundA = v3Refund(world, {
      outTradeNo,
      transactionId: a,
      outRefundNo: "RF-dupA",
      refund: 1_000,
      total: 1_000,
    });
    expect((await run.deliver(refundA)).apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    expect((await orderOf(world.prisma, outTradeNo)).refundedTotal).toBe(1_000);
    expect((await stockOf(world.prisma)).A).toBe((stock.A ?? 0) + 1);
  });

  it("B of another amount, ABNORMAL then SUCCESS: its total is B's, not compared with the order's", async () => {
    const { outTradeNo, b } = await chargedTwice("2", 1_200);
    const run = inline(world);
    const refund = {
      outTradeNo,
      transactionId: b,
      outRefundNo: "RF-dupB2",
      refundId: "5000dupB2",
      refund: 1_200,
      total: 1_200,
    };
    // Before: TRANSACTION_MISMATCH both times.
    expect((await run.deliver(v3Refund(world, { ...refund, status: "ABNORMAL" }))).apply?.outcome).toBe(
      "REFUND_ABNORMAL",
    );
    expect(run.published.at(-1)).toMatchObject({ type: "refund.abnormal", transactionId: b });
    expect((await run.deliver(v3Refund(world, refund))).apply?.outcome).toBe("DUPLICATE_PAYMENT_REFUNDED");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      refundedTotal: 0,
      refunds: [
        { transactionId: b, status: "SUCCESS", amountRefund: 1_200, reviewReason: "DUPLICATE_PAYMENT_REFUNDED" },
      ],
    });
  });

  it("a refund of B naming another total than B's payment reported is REFUND_AMOUNT_MISMATCH: it closes no review", async () => {
    const { outTradeNo, b } = await chargedTwice("T1", 1_200);
    const run = inline(world);
    // Half of B, reported as the whole of a 600 fen transaction: B's payment reported 1 200.
    const refund = { outTradeNo, transactionId: b, outRefundNo: "RF-dupBT1", refundId: "5000dupBT1", refund: 600 };
    // Before: DUPLICATE_PAYMENT_REFUNDED, and the order left its review (SUCCESS) with 600 fen of B still owed.
    expect((await run.deliver(v3Refund(world, { ...refund, total: 600 }))).apply?.outcome).toBe(
      "REFUND_AMOUNT_MISMATCH",
    );
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
      refundedTotal: 0,
      refunds: [{ transactionId: b, amountTotal: 600, reviewReason: "REFUND_AMOUNT_MISMATCH" }],
    });
    // B refunded in full, as its payment reported it: the review is over.
    const full = { ...refund, outRefundNo: "RF-dupBT1-full", refundId: "5000dupBT1-full", refund: 1_200, total: 1_200 };
    expect((await run.deliver(v3Refund(world, full))).apply?.outcome).toBe("DUPLICATE_PAYMENT_REFUNDED");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", reviewReason: null });
  });

  it("refunds of B adding up to more than B's total: the one passing it is REFUND_AMOUNT_MISMATCH, not counted, as for the payment kept", async () => {
    const { outTradeNo, b } = await chargedTwice("OV1", 1_200);
    const run = inline(world);
    const part = { outTradeNo, transactionId: b, refund: 800, total: 1_200 };
    expect(
      (await run.deliver(v3Refund(world, { ...part, outRefundNo: "RF-dupOV1-a", refundId: "5000dupOV1a" }))).apply
        ?.outcome,
    ).toBe("DUPLICATE_PAYMENT_REFUNDED");
    // 800 + 800 > 1 200: more than B's payment took. Before: DUPLICATE_PAYMENT_REFUNDED, and the order left its
    // review (SUCCESS) as if B had been refunded exactly.
    expect(
      (await run.deliver(v3Refund(world, { ...part, outRefundNo: "RF-dupOV1-b", refundId: "5000dupOV1b" }))).apply
        ?.outcome,
    ).toBe("REFUND_AMOUNT_MISMATCH");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
      refundedTotal: 0,
    });
    // The rest of B, exactly: the review is over.
    const rest = { ...part, refund: 400, outRefundNo: "RF-dupOV1-c", refundId: "5000dupOV1c" };
    expect((await run.deliver(v3Refund(world, rest))).apply?.outcome).toBe("DUPLICATE_PAYMENT_REFUNDED");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", reviewReason: null });
  });

  it("only this order's own second charge: another order's, or a row of another merchant, is TRANSACTION_MISMATCH", async () => {
    const { b: otherOrdersB } = await chargedTwice("3");
    const { outTradeNo } = await chargedTwice("4");
    const run = inline(world);
    const foreign = v3Refund(world, { outTradeNo, transactionId: otherOrdersB, refund: 1_000, total: 1_000 });
    expect((await run.deliver(foreign)).apply?.outcome).toBe("TRANSACTION_MISMATCH");
    // A DUPLICATE_PAYMENT row of this order number recorded under another merchant (out_trade_no is unique only
    // per merchant at WeChat) says nothing about this order.
    await world.prisma.notification.create({
      data: {
        id: "n-dup-other-merchant",
        mchid: "1900000777",
        eventType: "TRANSACTION.SUCCESS",
        receivedAt: new Date(),
        body: "{}",
        status: "REVIEW",
        errorCode: "DUPLICATE_PAYMENT",
        outTradeNo,
        transactionId: "4200DUPOTHER",
      },
    });
    const other = v3Refund(world, { outTradeNo, transactionId: "4200DUPOTHER", refund: 1_000, total: 1_000 });
    expect((await run.deliver(other)).apply?.outcome).toBe("TRANSACTION_MISMATCH");
    expect((await orderOf(world.prisma, outTradeNo)).refunds).toEqual([]);
  });

  it("B's refund delivered before B's payment: retried (TRANSACTION_NOT_SEEN, nothing written), then recorded", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const [a, b] = ["4200DUPA6", "4200DUPB6"];
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo, transactionId: a, total: 1_000 }))).apply?.outcome).toBe(
      "APPLIED",
    );
    const refundB = v3Refund(world, {
      outTradeNo,
      transactionId: b,
      outRefundNo: "RF-dup6",
      refund: 1_000,
      total: 1_000,
    });
    const { applyJob } = await run.parse(refundB);
    // Before: TRANSACTION_MISMATCH at once — REVIEW, final, although B's payment notification was still on its way.
    await expect(run.apply(applyJob!, { windowOver: false })).rejects.toMatchObject({
      code: "TRANSACTION_NOT_SEEN",
      policy: "window",
    });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", refunds: [] });
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: refundB.id } })).toMatchObject({
      status: "PROCESSING",
      appliedAt: null,
    });

    expect((await run.deliver(v3Payment(world, { outTradeNo, transactionId: b, total: 1_000 }))).apply?.outcome).toBe(
      "DUPLICATE_PAYMENT",
    );
    expect(await run.apply(applyJob!, { windowOver: false })).toMatchObject({
      outcome: "DUPLICATE_PAYMENT_REFUNDED",
      orderStatus: "SUCCESS",
    });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      transactionId: a,
      refundedTotal: 0,
      refunds: [{ outRefundNo: "RF-dup6", transactionId: b, reviewReason: "DUPLICATE_PAYMENT_REFUNDED" }],
    });
  });

  it("B refunded in full, in two parts: the order leaves its DUPLICATE_PAYMENT review (SUCCESS), the trail stays", async () => {
    const { outTradeNo, a, b } = await chargedTwice("7", 1_200);
    const run = inline(world);
    const part = { outTradeNo, transactionId: b, total: 1_200 };
    const first = await run.deliver(v3Refund(world, { ...part, outRefundNo: "RF-dup7-1", refund: 500 }));
    expect(first.apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "PAYMENT_REVIEW" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ reviewReason: "DUPLICATE_PAYMENT" });

    const rest = v3Refund(world, { ...part, outRefundNo: "RF-dup7-2", refund: 700 });
    const { apply, applyJob } = await run.deliver(rest);
    // Before: PAYMENT_REVIEW / DUPLICATE_PAYMENT for good — /reviews asked a human to refund what was refunded.
    expect(apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "SUCCESS" });
    const order = await orderOf(world.prisma, outTradeNo);
    expect(order).toMatchObject({ status: "SUCCESS", reviewReason: null, transactionId: a, refundedTotal: 0 });
    // The trail: both refunds as recorded (not counted), the second charge's notification in REVIEW with its code,
    // and the timeline entry of the refund that closed the review says so.
    expect(order.refunds.map((r) => [r.outRefundNo, r.amountRefund, r.reviewReason]).sort()).toEqual([
      ["RF-dup7-1", 500, "DUPLICATE_PAYMENT_REFUNDED"],
      ["RF-dup7-2", 700, "DUPLICATE_PAYMENT_REFUNDED"],
    ]);
    expect(
      await world.prisma.notification.findMany({ where: { transactionId: b, errorCode: "DUPLICATE_PAYMENT" } }),
    ).toMatchObject([{ status: "REVIEW" }]);
    const entry = await world.prisma.notificationEvent.findFirstOrThrow({
      where: { notificationId: rest.id, kind: "REVIEW" },
    });
    expect(entry.detail).toMatchObject({
      outcome: "DUPLICATE_PAYMENT_REFUNDED",
      orderReviewClosed: "DUPLICATE_PAYMENT",
    });
    expect(run.published.at(-1)).toMatchObject({
      type: "refund.review",
      reviewReason: "DUPLICATE_PAYMENT_REFUNDED",
      orderStatus: "SUCCESS",
    });
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", reviewReason: null });
  });

  it("charged three times: the review stays until both second charges are refunded in full", async () => {
    const { outTradeNo, b } = await chargedTwice("8");
    const c = "4200DUPC8";
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo, transactionId: c, total: 1_000 }))).apply?.outcome).toBe(
      "DUPLICATE_PAYMENT",
    );
    const ofB = await run.deliver(v3Refund(world, { outTradeNo, transactionId: b, refund: 1_000, total: 1_000 }));
    expect(ofB.apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "PAYMENT_REVIEW" });
    const ofC = await run.deliver(v3Refund(world, { outTradeNo, transactionId: c, refund: 1_000, total: 1_000 }));
    expect(ofC.apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "SUCCESS" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", reviewReason: null });
  });

  it("charged a third time while B's full refund waits for the order: the review stays (C is not refunded)", async () => {
    const { outTradeNo, b } = await chargedTwice("11");
    const c = "4200DUPC11";
    const run = inline(world);
    const third = v3Payment(world, { outTradeNo, transactionId: c, total: 1_000 });
    await run.parse(third);
    const ofB = await run.parse(v3Refund(world, { outTradeNo, transactionId: b, refund: 1_000, total: 1_000 }));
    // C's payment statement (the worker's batch of one), committed while B's refund statement waits for the order's
    // lock: the refund's snapshot, taken before, shows C's notification not yet in REVIEW as DUPLICATE_PAYMENT.
    const thirdCharge = paymentStatement([
      {
        notificationId: third.id,
        outTradeNo,
        transactionId: c,
        mchid: world.merchant.mchid,
        appid: world.merchant.appid,
        subMchid: null,
        subAppid: null,
        total: 1_000,
        currency: "CNY",
        payerOpenid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        payerSpOpenid: null,
        paidAt: Date.now(),
      },
    ]);
    const result = await whileRowChanges(world.db, thirdCharge.text, thirdCharge.values, () =>
      run.apply(ofB.applyJob!),
    );
    // Before: the refund closed the review on that snapshot — the order SUCCESS with C charged and not refunded.
    expect(result).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "PAYMENT_REVIEW" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
    });
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: third.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "DUPLICATE_PAYMENT",
    });
  });

  it("B refunded in two parts whose statements overlap: the second, run again on a new snapshot, closes the review", async () => {
    const { outTradeNo, b } = await chargedTwice("9", 1_200);
    const run = inline(world);
    const part = { outTradeNo, transactionId: b, total: 1_200 };
    const firstJob = v3Refund(world, { ...part, outRefundNo: "RF-dup9-1", refundId: "5000dup9-1", refund: 500 });
    const second = await run.parse(v3Refund(world, { ...part, outRefundNo: "RF-dup9-2", refund: 700 }));
    await run.parse(firstJob);
    // The first part's own refund statement, committed while the second's waits for the order's lock (its snapshot
    // taken before: it does not see the first part's Refund row).
    const firstPart = refundStatement({
      notificationId: firstJob.id,
      outTradeNo,
      outRefundNo: "RF-dup9-1",
      refundId: "5000dup9-1",
      transactionId: b,
      mchid: world.merchant.mchid,
      subMchid: null,
      status: "SUCCESS",
      amountRefund: 500,
      amountTotal: 1_200,
      successAt: Date.now(),
      restockOnFullRefund: true,
    });
    const result = await whileRowChanges(world.db, firstPart.text, firstPart.values, () => run.apply(second.applyJob!));
    expect(result).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "SUCCESS" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", reviewReason: null });
  });

  it("B over-refunded by two parts whose statements overlap: the second, run again on a new snapshot, is REFUND_AMOUNT_MISMATCH", async () => {
    const { outTradeNo, b } = await chargedTwice("OV2", 1_200);
    const run = inline(world);
    const part = { outTradeNo, transactionId: b, total: 1_200, refund: 800 };
    const firstJob = v3Refund(world, { ...part, outRefundNo: "RF-dupOV2-1", refundId: "5000dupOV2-1" });
    const second = await run.parse(v3Refund(world, { ...part, outRefundNo: "RF-dupOV2-2" }));
    await run.parse(firstJob);
    const firstPart = refundStatement({
      notificationId: firstJob.id,
      outTradeNo,
      outRefundNo: "RF-dupOV2-1",
      refundId: "5000dupOV2-1",
      transactionId: b,
      mchid: world.merchant.mchid,
      subMchid: null,
      status: "SUCCESS",
      amountRefund: 800,
      amountTotal: 1_200,
      successAt: Date.now(),
      restockOnFullRefund: true,
    });
    const result = await whileRowChanges(world.db, firstPart.text, firstPart.values, () => run.apply(second.applyJob!));
    expect(result).toMatchObject({ outcome: "REFUND_AMOUNT_MISMATCH" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
    });
  });

  it("the kept payment refunded in full first: the order stays in review until B is refunded, then REFUND", async () => {
    const { outTradeNo, a, b } = await chargedTwice("12");
    const stock = await stockOf(world.prisma);
    const run = inline(world);
    const ofA = await run.deliver(v3Refund(world, { outTradeNo, transactionId: a, refund: 1_000, total: 1_000 }));
    // Counted and restocked as any full refund, but B is still owed: the order stays on /reviews (which lists orders
    // in PAYMENT_REVIEW). Before: REFUND, off the list, B left to the notification's 7 days.
    expect(ofA.apply).toMatchObject({ outcome: "APPLIED", orderStatus: "PAYMENT_REVIEW" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
      refundedTotal: 1_000,
    });
    expect((await stockOf(world.prisma)).A).toBe((stock.A ?? 0) + 1);
    expect(run.published.at(-1)).toMatchObject({ type: "refund.succeeded", orderStatus: "PAYMENT_REVIEW" });

    // B refunded in full closes the review: the order's refunds are complete, so REFUND (not SUCCESS), no reason.
    const ofB = await run.deliver(v3Refund(world, { outTradeNo, transactionId: b, refund: 1_000, total: 1_000 }));
    expect(ofB.apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "REFUND" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "REFUND",
      reviewReason: null,
      refundedTotal: 1_000,
    });
    expect(run.published.at(-1)).toMatchObject({ type: "refund.review", orderStatus: "REFUND" });
    expect((await stockOf(world.prisma)).A).toBe((stock.A ?? 0) + 1);
  });

  it("B's closing refund waiting while the kept payment's full refund commits: run again, it closes to REFUND", async () => {
    const { outTradeNo, a, b } = await chargedTwice("13");
    const run = inline(world);
    const ofB = await run.parse(v3Refund(world, { outTradeNo, transactionId: b, refund: 1_000, total: 1_000 }));
    const ofAJob = v3Refund(world, {
      outTradeNo,
      transactionId: a,
      outRefundNo: "RF-dup13-a",
      refund: 1_000,
      total: 1_000,
    });
    await run.parse(ofAJob);
    const ofA = refundStatement({
      notificationId: ofAJob.id,
      outTradeNo,
      outRefundNo: "RF-dup13-a",
      refundId: null,
      transactionId: a,
      mchid: world.merchant.mchid,
      subMchid: null,
      status: "SUCCESS",
      amountRefund: 1_000,
      amountTotal: 1_000,
      successAt: Date.now(),
      restockOnFullRefund: true,
    });
    const result = await whileRowChanges(world.db, ofA.text, ofA.values, () => run.apply(ofB.applyJob!));
    expect(result).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "REFUND" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "REFUND",
      reviewReason: null,
      refundedTotal: 1_000,
    });
  });

  it("an order in review for another reason keeps it when its second charge is refunded", async () => {
    // Paid by A with no stock to take (OUT_OF_STOCK), then charged again by B: the order keeps OUT_OF_STOCK.
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { C: 1 } });
    const run = inline(world);
    const paid = await run.deliver(v3Payment(world, { outTradeNo, transactionId: "4200DUPA10", total: 1_000 }));
    expect(paid.apply?.outcome).toBe("OUT_OF_STOCK");
    const b = "4200DUPB10";
    expect((await run.deliver(v3Payment(world, { outTradeNo, transactionId: b, total: 1_000 }))).apply?.outcome).toBe(
      "DUPLICATE_PAYMENT",
    );
    const ofB = await run.deliver(v3Refund(world, { outTradeNo, transactionId: b, refund: 1_000, total: 1_000 }));
    expect(ofB.apply).toMatchObject({ outcome: "DUPLICATE_PAYMENT_REFUNDED", orderStatus: "PAYMENT_REVIEW" });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "OUT_OF_STOCK",
    });
  });

  it("the refund-id rule holds: B's refund carrying a refund id already another refund's is REFUND_ID_CONFLICT", async () => {
    const { outTradeNo, a, b } = await chargedTwice("5");
    const run = inline(world);
    const ofA = {
      outTradeNo,
      transactionId: a,
      outRefundNo: "RF-dup5-a",
      refundId: "5000dup5",
      refund: 300,
      total: 1_000,
    };
    expect((await run.deliver(v3Refund(world, ofA))).apply?.outcome).toBe("APPLIED");
    const ofB = { ...ofA, transactionId: b, outRefundNo: "RF-dup5-b", refund: 1_000 };
    expect((await run.deliver(v3Refund(world, ofB))).apply?.outcome).toBe("REFUND_ID_CONFLICT");
    expect((await orderOf(world.prisma, outTradeNo)).refunds).toMatchObject([{ outRefundNo: "RF-dup5-a" }]);
  });
});

/**
 * A refund's transaction that the database already shows to be another order's cannot become this order's: WeChat
 * reports one transaction for one order. Waiting for it (TRANSACTION_NOT_SEEN, the unknown-order window: an hour by
 * default) only delays the verdict, so it is TRANSACTION_MISMATCH at the first attempt. An unknown transaction still
 * waits (it may be a second charge whose payment is on its way: "B's refund delivered before B's payment" above).
 */
describe("a refund naming another order's transaction is TRANSACTION_MISMATCH at once, not waited for", () => {
  /** Parses `refund` and runs its apply job once, inside the unknown-order window. */
  async function firstAttempt(refund: ReturnType<typeof v3Refund>) {
    const run = inline(world);
    const { applyJob } = await run.parse(refund);
    return run.apply(applyJob!, { windowOver: false });
  }

  it("the transaction another order of the merchant was paid with (its Order.transactionId)", async () => {
    const { outTradeNo } = await paidOrder({ A: 1 }, 100);
    const other = await paidOrder({ A: 1 }, 100);
    const refund = v3Refund(world, { outTradeNo, transactionId: other.transactionId, refund: 100, total: 100 });
    // Before: rejected TRANSACTION_NOT_SEEN (retried for the whole window, then TRANSACTION_MISMATCH).
    expect((await firstAttempt(refund)).outcome).toBe("TRANSACTION_MISMATCH");
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: refund.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "TRANSACTION_MISMATCH",
    });
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "SUCCESS", refundedTotal: 0, refunds: [] });
    expect(await orderOf(world.prisma, other.outTradeNo)).toMatchObject({ refundedTotal: 0, refunds: [] });
  });

  it("a second charge recorded for another order of the merchant (its DUPLICATE_PAYMENT review)", async () => {
    const other = await paidOrder({ A: 1 }, 100);
    const secondCharge = "4200OTHERSECOND1";
    const dup = await inline(world).deliver(
      v3Payment(world, { outTradeNo: other.outTradeNo, transactionId: secondCharge, total: 100 }),
    );
    expect(dup.apply?.outcome).toBe("DUPLICATE_PAYMENT");
    const { outTradeNo } = await paidOrder({ A: 1 }, 100);
    const refund = v3Refund(world, { outTradeNo, transactionId: secondCharge, refund: 100, total: 100 });
    expect((await firstAttempt(refund)).outcome).toBe("TRANSACTION_MISMATCH");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ refunds: [] });
  });

  it("a second charge recorded for another merchant's order (PaymentTransaction, not that merchant's notifications)", async () => {
    const c = { mchid: "1900000669", appid: "wxtenantc0000069", apiV3Key: "f".repeat(32) };
    const { outTradeNo: cOrder, key: cKey } = await tenantPaidOrder(c, "4200000000TENANTC69");
    const secondCharge = "4200TENANTCSECOND69";
    const pay = v3Payment(world, {
      outTradeNo: cOrder,
      ...c,
      apiV3Key: cKey,
      transactionId: secondCharge,
      total: 100,
    });
    expect((await inline(world).deliver({ ...pay, mchid: c.mchid })).apply?.outcome).toBe("DUPLICATE_PAYMENT");
    const { outTradeNo } = await paidOrder({ A: 1 }, 100);
    const refund = v3Refund(world, { outTradeNo, transactionId: secondCharge, refund: 100, total: 100 });
    // Before: rejected TRANSACTION_NOT_SEEN (the charge's notification is another merchant's: not read).
    expect((await firstAttempt(refund)).outcome).toBe("TRANSACTION_MISMATCH");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ refunds: [] });
  });

  it("a second charge of the merchant's direct order under the number a sub-merchant's order has too", async () => {
    // The direct order (no sub-merchant) took the second charge; sub-merchant S has an order under the same number.
    // The charge's notification names no sub-merchant; PaymentTransaction tells whose it is: the direct order's, not
    // S's — another sub-merchant's transaction of this merchant, as the direct order's own payment would be.
    const { outTradeNo } = await paidOrder({ A: 1 }, 100);
    const secondCharge = "4200DIRECTSECOND70";
    const dup = await inline(world).deliver(v3Payment(world, { outTradeNo, transactionId: secondCharge, total: 100 }));
    expect(dup.apply?.outcome).toBe("DUPLICATE_PAYMENT");
    const sub = "1900000270";
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 }, subMchid: sub });
    const subPay = v3Payment(world, { outTradeNo, transactionId: "4200SUBPAYMENT70", partner: { subMchid: sub } });
    expect((await inline(world).deliver(subPay)).apply?.outcome).toBe("APPLIED");
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId: secondCharge,
      refund: 100,
      total: 100,
      partner: { subMchid: sub },
    });
    // Before: rejected TRANSACTION_NOT_SEEN for the whole window; then TRANSACTION_MISMATCH, a review naming S's order.
    await expect(firstAttempt(refund)).rejects.toMatchObject({ code: "SUB_MCHID_MISMATCH", policy: "stop" });
    expect(await world.prisma.refund.findMany({ where: { outTradeNo } })).toEqual([]);
  });

  it("a transaction no payment recorded yet still waits (TRANSACTION_NOT_SEEN, ORDER_NOT_PAID)", async () => {
    const { outTradeNo } = await paidOrder({ A: 1 }, 100);
    const unknown = v3Refund(world, { outTradeNo, transactionId: "4200NOTRECORDED71", refund: 100, total: 100 });
    await expect(firstAttempt(unknown)).rejects.toMatchObject({ code: "TRANSACTION_NOT_SEEN" });
    const unpaid = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const early = v3Refund(world, { outTradeNo: unpaid, transactionId: "4200NOTRECORDED72", refund: 100, total: 100 });
    await expect(firstAttempt(early)).rejects.toMatchObject({ code: "ORDER_NOT_PAID" });
  });

  it("also on an order not paid yet: its payment, whenever it lands, cannot be another order's transaction", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const other = await paidOrder({ A: 1 }, 100);
    const refund = v3Refund(world, { outTradeNo, transactionId: other.transactionId, refund: 100, total: 100 });
    // Before: rejected ORDER_NOT_PAID for the whole window, then dead-lettered.
    expect((await firstAttempt(refund)).outcome).toBe("TRANSACTION_MISMATCH");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({ status: "NOTPAY", refunds: [] });
  });

  it("a refund of this order's own second charge is still recorded, whatever other orders hold", async () => {
    const { outTradeNo } = await paidOrder({ A: 1 }, 100);
    const b = "4200OWNSECOND1";
    expect(
      (await inline(world).deliver(v3Payment(world, { outTradeNo, transactionId: b, total: 100 }))).apply?.outcome,
    ).toBe("DUPLICATE_PAYMENT");
    const refund = v3Refund(world, { outTradeNo, transactionId: b, refund: 100, total: 100 });
    expect((await firstAttempt(refund)).outcome).toBe("DUPLICATE_PAYMENT_REFUNDED");
  });
});

describe("refund amounts are checked against the order (REFUND_AMOUNT_MISMATCH: recorded, not counted)", () => {
  /** The order's money, status and stock, and its refunds as [out_refund_no, status, amount, reviewReason]. */
  async function money(outTradeNo: string) {
    const o = await orderOf(world.prisma, outTradeNo);
    return {
      status: o.status,
      refundedTotal: o.refundedTotal,
      refunds: o.refunds
        .map((r) => [r.outRefundNo, r.status, r.amountRefund, r.reviewReason] as const)
        .sort((x, y) => x[0].localeCompare(y[0])),
      restocked: o.movements.filter((m) => m.reason === "REFUND").length,
    };
  }

  it("partial refunds beyond the order total: the one that would exceed it is recorded for review, the rest count", async () => {
    const { outTradeNo, transactionId } = await paidOrder();
    const stockPaid = await stockOf(world.prisma);
    const run = inline(world);
    const refund = (outRefundNo: string, amount: number) =>
      v3Refund(world, { outTradeNo, transactionId, outRefundNo, refund: amount, total: 1_000 });
    expect((await run.deliver(refund("RFx-1", 600))).apply).toMatchObject({
      outcome: "APPLIED",
      orderStatus: "SUCCESS",
    });
    // Before: APPLIED, refundedTotal 1 200 of 1 000, order REFUND and its stock restored; a third (900) made it 2 100.
    const over = refund("RFx-2", 600);
    expect((await run.deliver(over)).apply).toMatchObject({
      outcome: "REFUND_AMOUNT_MISMATCH",
      orderStatus: "SUCCESS",
    });
    expect(await money(outTradeNo)).toEqual({
      status: "SUCCESS",
      refundedTotal: 600,
      refunds: [
        ["RFx-1", "SUCCESS", 600, null],
        ["RFx-2", "SUCCESS", 600, "REFUND_AMOUNT_MISMATCH"],
      ],
      restocked: 0,
    });
    expect(await stockOf(world.prisma)).toEqual(stockPaid);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: over.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "REFUND_AMOUNT_MISMATCH",
      outRefundNo: "RFx-2",
    });
    // Delivered again (another notification id): the same refund, already recorded.
    const overAgain = v3Refund(world, {
      outTradeNo,
      transactionId,
      outRefundNo: "RFx-2",
      refundId: (await world.prisma.refund.findFirstOrThrow({ where: { outTradeNo, outRefundNo: "RFx-2" } })).refundId!,
      refund: 600,
      total: 1_000,
    });
    expect((await run.deliver(overAgain)).apply?.outcome).toBe("DUPLICATE");
    // What is left (400) still counts, completes the order and restores its stock.
    expect((await run.deliver(refund("RFx-3", 400))).apply).toMatchObject({
      outcome: "APPLIED",
      orderStatus: "REFUND",
    });
    expect(await money(outTradeNo)).toMatchObject({ status: "REFUND", refundedTotal: 1_000, restocked: 2 });
  });

  it("one refund above the order total (amount.total inflated with it): recorded, not counted, no stock back", async () => {
    const { outTradeNo, transactionId } = await paidOrder();
    const stockPaid = await stockOf(world.prisma);
    const job = v3Refund(world, { outTradeNo, transactionId, outRefundNo: "RFbig", refund: 500_000, total: 500_000 });
    // Before: APPLIED, refundedTotal 500 000, order REFUND, stock restored, refund.succeeded of 500 000.
    expect((await inline(world).deliver(job)).apply).toMatchObject({
      outcome: "REFUND_AMOUNT_MISMATCH",
      orderStatus: "SUCCESS",
    });
    expect(await money(outTradeNo)).toEqual({
      status: "SUCCESS",
      refundedTotal: 0,
      refunds: [["RFbig", "SUCCESS", 500_000, "REFUND_AMOUNT_MISMATCH"]],
      restocked: 0,
    });
    expect(await stockOf(world.prisma)).toEqual(stockPaid);
  });

  it("a refund whose amount.total (v2 total_fee) is not the order's total, even within it, is not counted", async () => {
    const a = await paidOrder({ A: 1 }, 1_000);
    const v3 = v3Refund(world, { ...a, outRefundNo: "RF-wrong-total", refund: 1_000, total: 99_999 });
    expect((await inline(world).deliver(v3)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    expect(await money(a.outTradeNo)).toMatchObject({ status: "SUCCESS", refundedTotal: 0 });

    const b = await paidOrder({ A: 1 }, 100);
    const v2 = v2Refund(world, { ...b, outRefundNo: "RF-v2-over", refund: 10_000, total: 100 });
    expect((await inline(world).deliver(v2)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    expect(await money(b.outTradeNo)).toMatchObject({ status: "SUCCESS", refundedTotal: 0 });
    // An abnormal refund naming another total is flagged by this code too (it would be REFUND_ABNORMAL otherwise).
    const abnormal = v3Refund(world, {
      ...b,
      outRefundNo: "RF-abn-total",
      refund: 100,
      total: 200,
      status: "ABNORMAL",
    });
    expect((await inline(world).deliver(abnormal)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    expect((await orderOf(world.prisma, b.outTradeNo)).refunds).toContainEqual(
      expect.objectContaining({
        outRefundNo: "RF-abn-total",
        status: "ABNORMAL",
        reviewReason: "REFUND_AMOUNT_MISMATCH",
      }),
    );
  });

  it("refundedTotal plus a refund near 2^31 fen is compared, not overflowed: REFUND_AMOUNT_MISMATCH, not DB_DATA", async () => {
    const { outTradeNo, transactionId } = await paidOrder({ A: 1 }, 1_000);
    const run = inline(world);
    await run.deliver(v3Refund(world, { outTradeNo, transactionId, outRefundNo: "RFov-1", refund: 500, total: 1_000 }));
    const huge = v3Refund(world, {
      outTradeNo,
      transactionId,
      outRefundNo: "RFov-2",
      refund: 2 ** 31 - 1,
      total: 1_000,
    });
    // Before: DB_DATA "integer out of range", dead-lettered.
    expect((await run.deliver(huge)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    expect(await money(outTradeNo)).toMatchObject({ status: "SUCCESS", refundedTotal: 500 });
  });

  it("an order in PAYMENT_REVIEW after a payment of another amount: its refunds are compared with amountTotal, so reviewed", async () => {
    // What was paid (500) is not stored: only amountTotal (1 000) is, so a refund naming the paid total is not counted.
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const transactionId = "4200000000PAID500";
    const paid = await inline(world).deliver(v3Payment(world, { outTradeNo, transactionId, total: 500 }));
    expect(paid.apply).toMatchObject({ outcome: "AMOUNT_MISMATCH", orderStatus: "PAYMENT_REVIEW" });
    const run = inline(world);
    const r1 = v3Refund(world, { outTradeNo, transactionId, outRefundNo: "RFpm-1", refund: 500, total: 500 });
    const r2 = v3Refund(world, { outTradeNo, transactionId, outRefundNo: "RFpm-2", refund: 500, total: 500 });
    // Before: both APPLIED, 1 000 refunded of 500 paid, order REFUND.
    expect((await run.deliver(r1)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    expect((await run.deliver(r2)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    expect(await money(outTradeNo)).toMatchObject({ status: "PAYMENT_REVIEW", refundedTotal: 0 });
  });

  it("publishes refund.review with the code, never refund.succeeded, also when a re-run job re-derives it", () => {
    const facts: RefundFacts = {
      notificationId: "n-1",
      outTradeNo: "T-1",
      outRefundNo: "RFbig",
      refundId: "5000big",
      transactionId: "4200000001",
      mchid: world.merchant.mchid,
      subMchid: null,
      status: "SUCCESS",
      amountRefund: 500_000,
      amountTotal: 500_000,
      successAt: null,
      restockOnFullRefund: true,
    };
    const result: RefundResultRow = {
      outcome: "REFUND_AMOUNT_MISMATCH",
      orderId: "o-1",
      orderStatus: "SUCCESS",
      reviewReason: null,
      refundedTotal: null,
      restocked: 0,
      restockByHand: null,
      notificationStatus: "PROCESSING",
      notificationCode: null,
      appliedAt: 1_764_000_000_000,
    };
    // Before: no refund.review type; an APPLIED over-refund published refund.succeeded of 500 000.
    expect(refundEvent(facts, result)).toMatchObject({
      type: "refund.review",
      reviewReason: "REFUND_AMOUNT_MISMATCH",
      orderStatus: "SUCCESS",
      amount: 500_000,
    });
    const rerun = {
      ...result,
      outcome: "ALREADY" as const,
      notificationStatus: "REVIEW",
      notificationCode: "REFUND_AMOUNT_MISMATCH",
    };
    expect(refundEvent(facts, rerun)?.type).toBe("refund.review");
    expect(refundEvent(facts, { ...result, outcome: "REFUND_CONFLICT" })?.type).toBe("refund.review");
    expect(refundEvent(facts, { ...result, outcome: "REFUND_ID_CONFLICT" })).toMatchObject({
      type: "refund.review",
      reviewReason: "REFUND_ID_CONFLICT",
    });
    // Not the order's refund: nothing to tell its merchant.
    expect(refundEvent(facts, { ...result, outcome: "TRANSACTION_MISMATCH" })).toBeNull();
  });
});

describe("published events (PUBLISH_EVENTS=true)", () => {
  it("each refund event carries the refund's own code and the commit time, also when a later run re-derives it", async () => {
    // An order paid while out of stock keeps reviewReason OUT_OF_STOCK: not what any of its refunds says.
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { C: 1 } });
    const transactionId = "4200000000RV1";
    const run = inline(world);
    await run.deliver(v3Payment(world, { outTradeNo, transactionId, total: 1_000 }));
    const refunds = [
      { status: "ABNORMAL", type: "refund.abnormal", reviewReason: "REFUND_ABNORMAL", orderStatus: "PAYMENT_REVIEW" },
      { status: "CLOSED", type: "refund.closed", reviewReason: "REFUND_CLOSED", orderStatus: "PAYMENT_REVIEW" },
      { status: "SUCCESS", type: "refund.succeeded", reviewReason: null, orderStatus: "REFUND" },
    ] as const;
    for (const r of refunds) {
      const job = v3Refund(world, { outTradeNo, transactionId, refund: 1_000, total: 1_000, status: r.status });
      const { applyJob } = await run.deliver(job);
      const n = await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } });
      const first = run.published.at(-1);
      // Before: reviewReason OUT_OF_STOCK, the order's.
      expect(first).toMatchObject({ type: r.type, reviewReason: r.reviewReason, orderStatus: r.orderStatus });
      expect(first?.occurredAt).toBe(n.appliedAt?.getTime());
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
      // Before: occurredAt was the re-run's Date.now().
      expect(run.published.at(-1)).toEqual(first);
    }
  });
});

/**
 * Another tenant of the Merchant table (APIv3 only) with an order of 100 fen paid by `transactionId`: its order
 * number and the key its notifications are encrypted with.
 */
async function tenantPaidOrder(
  tenant: { mchid: string; appid: string; apiV3Key: string },
  transactionId: string,
): Promise<{ outTradeNo: string; key: Buffer }> {
  await world.prisma.merchant.create({ data: { ...tenant, apiV2Key: null } });
  const outTradeNo = await seedOrder(world, {
    amountTotal: 100,
    items: { A: 1 },
    mchid: tenant.mchid,
    appid: tenant.appid,
  });
  const key = Buffer.from(tenant.apiV3Key);
  const pay = v3Payment(world, { outTradeNo, ...tenant, apiV3Key: key, transactionId, total: 100 });
  expect((await inline(world).deliver({ ...pay, mchid: tenant.mchid })).apply?.outcome).toBe("APPLIED");
  return { outTradeNo, key };
}

describe("refund numbers: one refund per (order, out_refund_no)", () => {
  it("another tenant's refund under the same out_refund_no leaves this tenant's own refund alone", async () => {
    // WeChat makes out_refund_no unique per merchant only: tenant B numbers a refund of its own order as A does.
    const b = { mchid: "1900000666", appid: "wxtenantb0000066", apiV3Key: "c".repeat(32) };
    const bTxn = "4200000000TENANTB66";
    const { outTradeNo: bOrder, key: bKey } = await tenantPaidOrder(b, bTxn);
    const a = await paidOrder();
    const shared = `R-${a.outTradeNo}`;
    const bRefund = v3Refund(world, {
      outTradeNo: bOrder,
      transactionId: bTxn,
      outRefundNo: shared,
      refund: 100,
      total: 100,
      status: "CLOSED",
      mchid: b.mchid,
      apiV3Key: bKey,
    });
    expect((await inline(world).deliver({ ...bRefund, mchid: b.mchid })).apply?.outcome).toBe("REFUND_CLOSED");

    const stockPaid = await stockOf(world.prisma);
    const aRefund = v3Refund(world, {
      ...a,
      outRefundNo: shared,
      refundId: "5000tenantA",
      refund: 1_000,
      total: 1_000,
    });
    const run = inline(world);
    const { apply, applyJob } = await run.deliver(aRefund);
    // Before: REFUND_CONFLICT — A's refund not recorded, refundedTotal 0, no event, stock not restored.
    expect(apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    expect(await orderOf(world.prisma, a.outTradeNo)).toMatchObject({
      status: "REFUND",
      refundedTotal: 1_000,
      refunds: [{ outRefundNo: shared, status: "SUCCESS", amountRefund: 1_000, reviewReason: null }],
    });
    expect((await stockOf(world.prisma)).A).toBe((stockPaid.A ?? 0) + 2);
    expect(await orderOf(world.prisma, bOrder)).toMatchObject({
      status: "SUCCESS",
      refundedTotal: 0,
      refunds: [{ outRefundNo: shared, status: "CLOSED", amountRefund: 100 }],
    });
    // The job run again answers ALREADY; the same refund delivered again under another id is DUPLICATE.
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    const again = v3Refund(world, { ...a, outRefundNo: shared, refundId: "5000tenantA", refund: 1_000, total: 1_000 });
    expect((await run.deliver(again)).apply?.outcome).toBe("DUPLICATE");
  });

  it("the same refund number again with another amount or refund id is REFUND_CONFLICT; the stored refund stays", async () => {
    const a = await paidOrder({ A: 1 }, 1_000);
    const run = inline(world);
    const stored = { ...a, outRefundNo: "RFv23", refundId: "5000RFv23" };
    expect((await run.deliver(v3Refund(world, { ...stored, refund: 300, total: 1_000 }))).apply?.outcome).toBe(
      "APPLIED",
    );
    // Before: DUPLICATE, without comparing anything.
    const otherAmount = v2Refund(world, { ...stored, refund: 700, total: 1_000 });
    expect((await run.deliver(otherAmount)).apply?.outcome).toBe("REFUND_CONFLICT");
    const otherId = v3Refund(world, { ...stored, refundId: "5000other", refund: 300, total: 1_000 });
    expect((await run.deliver(otherId)).apply?.outcome).toBe("REFUND_CONFLICT");
    expect(await orderOf(world.prisma, a.outTradeNo)).toMatchObject({
      status: "SUCCESS",
      refundedTotal: 300,
      refunds: [{ outRefundNo: "RFv23", refundId: "5000RFv23", status: "SUCCESS", amountRefund: 300 }],
    });
    for (const job of [otherAmount, otherId]) {
      expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({
        status: "REVIEW",
        errorCode: "REFUND_CONFLICT",
      });
    }
    // An earlier status of a refund with other facts is not overwritten either.
    const closed = { ...a, outRefundNo: "RF-closed-then", refundId: "5000closed", status: "CLOSED" as const };
    expect((await run.deliver(v3Refund(world, { ...closed, refund: 200, total: 1_000 }))).apply?.outcome).toBe(
      "REFUND_CLOSED",
    );
    const success = v3Refund(world, { ...closed, status: "SUCCESS", refund: 900, total: 1_000 });
    expect((await run.deliver(success)).apply?.outcome).toBe("REFUND_CONFLICT");
    expect((await orderOf(world.prisma, a.outTradeNo)).refundedTotal).toBe(300);
  });

  it("the same refund number again naming another transaction is REFUND_CONFLICT: not counted, the stored refund stays", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 1_000, items: { A: 1 } });
    const [a, b] = ["4200RFTXNA1", "4200RFTXNB1"];
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo, transactionId: a, total: 1_000 }))).apply?.outcome).toBe(
      "APPLIED",
    );
    expect((await run.deliver(v3Payment(world, { outTradeNo, transactionId: b, total: 1_000 }))).apply?.outcome).toBe(
      "DUPLICATE_PAYMENT",
    );
    // R is the refund of the second charge B, first reported ABNORMAL.
    const r = { outTradeNo, outRefundNo: "RF-txn-1", refundId: "5000RF-txn-1", refund: 1_000, total: 1_000 };
    expect((await run.deliver(v3Refund(world, { ...r, transactionId: b, status: "ABNORMAL" }))).apply?.outcome).toBe(
      "REFUND_ABNORMAL",
    );
    // The same refund number and id, now SUCCESS but naming the payment the order kept: two reports of one refund
    // disagree on whose money it is. Before: APPLIED — counted against A, the row moved to A, the order REFUND.
    const otherTxn = v3Refund(world, { ...r, transactionId: a });
    expect((await run.deliver(otherTxn)).apply?.outcome).toBe("REFUND_CONFLICT");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      status: "PAYMENT_REVIEW",
      refundedTotal: 0,
      refunds: [{ outRefundNo: "RF-txn-1", transactionId: b, status: "ABNORMAL" }],
    });
    // Recorded as B's refund, a report naming A is not a plain DUPLICATE either (before: DUPLICATE).
    expect((await run.deliver(v3Refund(world, { ...r, transactionId: b }))).apply?.outcome).toBe(
      "DUPLICATE_PAYMENT_REFUNDED",
    );
    expect((await run.deliver(v3Refund(world, { ...r, transactionId: a }))).apply?.outcome).toBe("REFUND_CONFLICT");
    expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
      refundedTotal: 0,
      refunds: [{ outRefundNo: "RF-txn-1", transactionId: b, status: "SUCCESS" }],
    });
  });

  it("a refund id already another refund's is REFUND_ID_CONFLICT: nothing recorded, the stored refund stays", async () => {
    // Tenant B of the Merchant table encrypts a refund of its own order carrying tenant A's (the world's) refund id.
    const b = { mchid: "1900000668", appid: "wxtenantb0000068", apiV3Key: "e".repeat(32) };
    const bTxn = "4200000000TENANTB68";
    const { outTradeNo: bOrder, key: bKey } = await tenantPaidOrder(b, bTxn);
    const bRefund = v3Refund(world, {
      outTradeNo: bOrder,
      transactionId: bTxn,
      outRefundNo: "RF-b68",
      refundId: "5000victim68",
      refund: 100,
      total: 100,
      mchid: b.mchid,
      apiV3Key: bKey,
    });
    expect((await inline(world).deliver({ ...bRefund, mchid: b.mchid })).apply?.outcome).toBe("APPLIED");

    const a = await paidOrder({ A: 1 }, 1_000);
    const run = inline(world);
    const genuine = v3Refund(world, {
      ...a,
      outRefundNo: "RF-a68",
      refundId: "5000victim68",
      refund: 1_000,
      total: 1_000,
    });
    // Before: 23505 on Refund_refundId_key → DB_CONSTRAINT, dead-lettered; every replay the same.
    const { apply, applyJob } = await run.deliver(genuine);
    expect(apply).toMatchObject({ outcome: "REFUND_ID_CONFLICT", orderStatus: "SUCCESS" });
    expect(await orderOf(world.prisma, a.outTradeNo)).toMatchObject({
      status: "SUCCESS",
      refundedTotal: 0,
      refunds: [],
    });
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: genuine.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "REFUND_ID_CONFLICT",
      outRefundNo: "RF-a68",
    });
    expect(await orderOf(world.prisma, bOrder)).toMatchObject({
      status: "REFUND",
      refunds: [{ outRefundNo: "RF-b68", refundId: "5000victim68", status: "SUCCESS" }],
    });
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
  });

  it("REFUND_CONFLICT too when the other delivery commits while this statement runs (after its snapshot)", async () => {
    const a = await paidOrder({ A: 1 }, 100);
    const run = inline(world);
    const job = v3Refund(world, { ...a, outRefundNo: "RF-race", refundId: "5000race-mine", refund: 100, total: 100 });
    const { applyJob } = await run.parse(job);
    if (!applyJob) throw new Error("the refund should have an apply job");
    // The same number with another refund id is written by a transaction that commits only once this statement
    // waits for that row.
    const insertOther = `INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", "orderId", status, "amountRefund", "amountTotal", "updatedAt")
      VALUES ($1, '5000race-other', $2, (SELECT id FROM "Order" WHERE "outTradeNo" = $2), 'ABNORMAL', 100, 100, now())`;
    const result = await whileRowChanges(world.db, insertOther, ["RF-race", a.outTradeNo], () => run.apply(applyJob));
    expect(result.outcome).toBe("REFUND_CONFLICT");
    expect((await orderOf(world.prisma, a.outTradeNo)).refundedTotal).toBe(0);
    expect(await world.prisma.refund.findMany({ where: { outTradeNo: a.outTradeNo } })).toMatchObject([
      { outRefundNo: "RF-race", refundId: "5000race-other", status: "ABNORMAL" },
    ]);
  });

  it("and when the other delivery committed meanwhile names another transaction", async () => {
    const a = await paidOrder({ A: 1 }, 100);
    const run = inline(world);
    const job = v3Refund(world, {
      ...a,
      outRefundNo: "RF-race-txn",
      refundId: "5000race-txn",
      refund: 100,
      total: 100,
    });
    const { applyJob } = await run.parse(job);
    if (!applyJob) throw new Error("the refund should have an apply job");
    // The same number and refund id, ABNORMAL, of another transaction, committed once this statement waits for it.
    const insertOther = `INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", "orderId", "transactionId", status, "amountRefund", "amountTotal", "updatedAt")
      VALUES ($1, '5000race-txn', $2, (SELECT id FROM "Order" WHERE "outTradeNo" = $2), '4200race-other', 'ABNORMAL', 100, 100, now())`;
    const result = await whileRowChanges(world.db, insertOther, ["RF-race-txn", a.outTradeNo], () =>
      run.apply(applyJob),
    );
    expect(result.outcome).toBe("REFUND_CONFLICT");
    expect((await orderOf(world.prisma, a.outTradeNo)).refundedTotal).toBe(0);
    expect(await world.prisma.refund.findMany({ where: { outTradeNo: a.outTradeNo } })).toMatchObject([
      { outRefundNo: "RF-race-txn", transactionId: "4200race-other", status: "ABNORMAL" },
    ]);
  });

  it("the same refund number again reporting another order total is REFUND_CONFLICT: an ABNORMAL report is not overwritten", async () => {
    const a = await paidOrder({ A: 1 }, 1_000);
    const run = inline(world);
    const r = { ...a, outRefundNo: "RF-total-1", refundId: "5000RF-total-1", refund: 1_000 };
    // First reported ABNORMAL naming another total than the order's: recorded, not counted.
    const abnormal = v3Refund(world, { ...r, status: "ABNORMAL", total: 2_000 });
    expect((await run.deliver(abnormal)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    // The same refund (number, id, transaction, amount) reported SUCCESS with the order's total: the two reports
    // disagree on what was refunded from. Before: APPLIED — counted, the order REFUND and restocked.
    const success = v3Refund(world, { ...r, total: 1_000 });
    expect((await run.deliver(success)).apply?.outcome).toBe("REFUND_CONFLICT");
    expect(await orderOf(world.prisma, a.outTradeNo)).toMatchObject({
      status: "SUCCESS",
      refundedTotal: 0,
      refunds: [{ outRefundNo: "RF-total-1", status: "ABNORMAL", amountTotal: 2_000 }],
    });
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: success.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "REFUND_CONFLICT",
    });
  });

  it("and a SUCCESS refund reported again with another order total is REFUND_CONFLICT, not DUPLICATE", async () => {
    const a = await paidOrder({ A: 1 }, 1_000);
    const run = inline(world);
    const r = { ...a, outRefundNo: "RF-total-2", refundId: "5000RF-total-2", refund: 400 };
    expect((await run.deliver(v3Refund(world, { ...r, total: 1_000 }))).apply?.outcome).toBe("APPLIED");
    // Before: DUPLICATE (and APIv2's total_fee was not compared either).
    expect((await run.deliver(v2Refund(world, { ...r, total: 3_000 }))).apply?.outcome).toBe("REFUND_CONFLICT");
    // The same facts again stay a plain DUPLICATE.
    expect((await run.deliver(v3Refund(world, { ...r, total: 1_000 }))).apply?.outcome).toBe("DUPLICATE");
    expect(await orderOf(world.prisma, a.outTradeNo)).toMatchObject({
      refundedTotal: 400,
      refunds: [{ outRefundNo: "RF-total-2", status: "SUCCESS", amountTotal: 1_000 }],
    });
  });

  it("and when the other delivery committed meanwhile reports another order total", async () => {
    const a = await paidOrder({ A: 1 }, 100);
    const run = inline(world);
    const job = v3Refund(world, {
      ...a,
      outRefundNo: "RF-race-total",
      refundId: "5000race-total",
      refund: 100,
      total: 100,
    });
    const { applyJob } = await run.parse(job);
    if (!applyJob) throw new Error("the refund should have an apply job");
    // The same number, refund id and transaction, ABNORMAL with another total, committed once this statement waits.
    const insertOther = `INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", "orderId", "transactionId", status, "amountRefund", "amountTotal", "updatedAt")
      VALUES ($1, '5000race-total', $2, (SELECT id FROM "Order" WHERE "outTradeNo" = $2), $3, 'ABNORMAL', 100, 900, now())`;
    const result = await whileRowChanges(world.db, insertOther, ["RF-race-total", a.outTradeNo, a.transactionId], () =>
      run.apply(applyJob),
    );
    expect(result.outcome).toBe("REFUND_CONFLICT");
    expect((await orderOf(world.prisma, a.outTradeNo)).refundedTotal).toBe(0);
    expect(await world.prisma.refund.findMany({ where: { outTradeNo: a.outTradeNo } })).toMatchObject([
      { outRefundNo: "RF-race-total", status: "ABNORMAL", amountTotal: 900 },
    ]);
  });
});
