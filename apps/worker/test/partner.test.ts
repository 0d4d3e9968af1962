import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createWorld,
  inline,
  seedOrder,
  seedSkus,
  v2Payment,
  v2Refund,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";

/**
 * Partner (服务商) mode: the notifications of every sub-merchant arrive under the service provider's keys and route,
 * so the Notification row's mchid is the provider's. The parse stage records the sub-merchant the notification
 * names (Notification.subMchid, migration 20261202130000): the body stays encrypted, and a human clearing a
 * review needs it for WeChat's partner APIs. An order is its sub-merchant's number (Order's key (outTradeNo, mchid,
 * subMchid), migration 20261207110002): sub-merchants of one service provider may each have an order "1001".
 */
let world: World;
const SUB_A = "1900000A11";
const SUB_B = "1900000B22";
beforeAll(async () => {
  world = await createWorld("wpartner");
  await seedSkus(world.prisma, { A: 100 });
});
afterAll(() => world.cleanup());

const rowOf = (id: string) => world.prisma.notification.findUniqueOrThrow({ where: { id } });

/** The timeline entry (NotificationEvent) the apply statement wrote for a notification: APPLIED, DUPLICATE or REVIEW. */
async function applyEventOf(id: string) {
  return world.prisma.notificationEvent.findFirstOrThrow({
    where: { notificationId: id, kind: { in: ["APPLIED", "DUPLICATE", "REVIEW"] } },
  });
}

/** An order of sub-merchant `sub`, paid by its own APIv3 notification; its out_trade_no and transaction id. */
async function paidOrder(sub: string): Promise<{ outTradeNo: string; transactionId: string }> {
  const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: sub });
  const job = v3Payment(world, { outTradeNo, partner: { subMchid: sub } });
  const { apply } = await inline(world).deliver(job);
  expect(apply?.outcome).toBe("APPLIED");
  const { transactionId } = await rowOf(job.id);
  return { outTradeNo, transactionId: transactionId ?? "" };
}

describe("the parse stage records the sub-merchant a notification names", () => {
  it("APIv3 payment and refund: sub_mchid; mchid stays the service provider's", async () => {
    const { outTradeNo, transactionId } = await paidOrder(SUB_A);
    const payment = await world.prisma.notification.findFirstOrThrow({ where: { outTradeNo } });
    expect(payment).toMatchObject({ mchid: world.merchant.mchid, subMchid: SUB_A, status: "APPLIED" });

    const refund = v3Refund(world, {
      outTradeNo,
      transactionId,
      refund: 100,
      total: 100,
      partner: { subMchid: SUB_A },
    });
    const { apply } = await inline(world).deliver(refund);
    expect(apply?.outcome).toBe("APPLIED");
    expect(await rowOf(refund.id)).toMatchObject({ mchid: world.merchant.mchid, subMchid: SUB_A });
  });

  it("an APIv3 payment that is not SUCCESS (IGNORED) still records it", async () => {
    const outTradeNo = await seedOrder(world, { items: { A: 1 }, subMchid: SUB_A });
    const job = v3Payment(world, { outTradeNo, tradeState: "NOTPAY", partner: { subMchid: SUB_A } });
    expect((await inline(world).deliver(job)).parse.outcome).toBe("IGNORED");
    expect(await rowOf(job.id)).toMatchObject({ status: "IGNORED", subMchid: SUB_A });
  });

  it("APIv2 payment: the signed sub_mch_id", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: SUB_B });
    const job = v2Payment(world, { outTradeNo, partner: { subMchid: SUB_B } });
    const { apply } = await inline(world).deliver(job);
    expect(apply?.outcome).toBe("APPLIED");
    expect(await rowOf(job.id)).toMatchObject({ mchid: world.merchant.mchid, subMchid: SUB_B });
  });

  it("APIv2 refund: the outer sub_mch_id as received (not signed), the value the refund was applied under", async () => {
    const { outTradeNo, transactionId } = await paidOrder(SUB_B);
    const job = v2Refund(world, { outTradeNo, transactionId, refund: 100, total: 100, partner: { subMchid: SUB_B } });
    const { apply } = await inline(world).deliver(job);
    expect(apply?.outcome).toBe("APPLIED");
    expect(await rowOf(job.id)).toMatchObject({ subMchid: SUB_B });
  });

  it("a direct merchant's notification records none", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo });
    await inline(world).deliver(job);
    expect(await rowOf(job.id)).toMatchObject({ status: "APPLIED", subMchid: null });
  });
});

describe("a notification naming a sub-merchant outside the service-provider shape", () => {
  // WeChat's direct-merchant payload (mchid, appid) names no sub-merchant, its partner payload names sp_mchid and
  // sp_appid with sub_mchid. One with mchid and sub_mchid was read as the provider's own: applied to its direct order
  // while its row recorded the sub-merchant, so the dashboard listed it under that sub-merchant (found in a walk).
  it("an APIv3 payment with mchid/appid and sub_mchid is PAYLOAD_INVALID at parse; the provider's direct order is left alone", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo, fields: { sub_mchid: SUB_A } });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
    expect(await world.prisma.order.findFirstOrThrow({ where: { outTradeNo } })).toMatchObject({
      status: "NOTPAY",
      transactionId: null,
    });
  });

  it("an APIv3 refund with mchid and sub_mchid is PAYLOAD_INVALID at parse; nothing recorded on the direct order", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const payment = v3Payment(world, { outTradeNo });
    expect((await inline(world).deliver(payment)).apply?.outcome).toBe("APPLIED");
    const { transactionId } = await rowOf(payment.id);
    const refund = v3Refund(world, {
      outTradeNo,
      transactionId: transactionId ?? "",
      refund: 100,
      total: 100,
      fields: { sub_mchid: SUB_A },
    });
    await expect(inline(world).parse(refund)).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
    expect(await world.prisma.refund.count({ where: { outTradeNo } })).toBe(0);
  });
});

describe("out_trade_no is per sub-merchant of one service provider", () => {
  it("sub-merchants A and B each have an order under one number, each paid by its own notification", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: SUB_A });
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 }, subMchid: SUB_B });
    const run = inline(world);
    const ofA = v3Payment(world, { outTradeNo, transactionId: "4200000000SUBA01", partner: { subMchid: SUB_A } });
    const ofB = v2Payment(world, { outTradeNo, transactionId: "4200000000SUBB01", partner: { subMchid: SUB_B } });
    expect((await run.deliver(ofB)).apply?.outcome).toBe("APPLIED");
    expect((await run.deliver(ofA)).apply?.outcome).toBe("APPLIED");
    const orders = await world.prisma.order.findMany({
      where: { outTradeNo },
      select: { subMchid: true, status: true, transactionId: true },
      orderBy: { subMchid: "asc" },
    });
    expect(orders).toEqual([
      { subMchid: SUB_A, status: "SUCCESS", transactionId: "4200000000SUBA01" },
      { subMchid: SUB_B, status: "SUCCESS", transactionId: "4200000000SUBB01" },
    ]);
  });

  it("sub-merchant A's payment naming a number only B has is ORDER_NOT_FOUND; the row names A, B's order is left alone", async () => {
    const ofB = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: SUB_B });
    const run = inline(world);
    const job = v3Payment(world, { outTradeNo: ofB, partner: { subMchid: SUB_A } });
    const { applyJob } = await run.parse(job);
    if (!applyJob) throw new Error("the payment should have an apply job");
    await expect(run.apply(applyJob)).rejects.toMatchObject({ code: "ORDER_NOT_FOUND", policy: "window" });
    expect(await rowOf(job.id)).toMatchObject({ outTradeNo: ofB, mchid: world.merchant.mchid, subMchid: SUB_A });
    expect(await world.prisma.order.findFirstOrThrow({ where: { outTradeNo: ofB } })).toMatchObject({
      subMchid: SUB_B,
      status: "NOTPAY",
      transactionId: null,
    });
  });

  it("APIv2 refund: a copy of B's req_info resent first under A's outer sub_mch_id leaves B's genuine delivery to apply", async () => {
    const { outTradeNo, transactionId } = await paidOrder(SUB_B);
    const refund = { outTradeNo, transactionId, outRefundNo: "RF-forged-sub", refundId: "5000forgedsub", refund: 100 };
    const forged = v2Refund(world, { ...refund, total: 100, partner: { subMchid: SUB_A } });
    const genuine = v2Refund(world, { ...refund, total: 100, partner: { subMchid: SUB_B } });
    // Two notifications, as the ingress now tells them apart (the outer sub_mch_id is part of the id): before, the
    // genuine one had the copy's id and was answered as its redelivery, so this refund was never recorded.
    expect(genuine.id).not.toBe(forged.id);
    const run = inline(world);
    // The copy names A, but its (authenticated) transaction is B's order's: refused at once, not waited for.
    const { applyJob } = await run.parse(forged);
    if (!applyJob) throw new Error("the refund should have an apply job");
    await expect(run.apply(applyJob)).rejects.toMatchObject({ code: "SUB_MCHID_MISMATCH", policy: "stop" });
    expect((await run.deliver(genuine)).apply).toMatchObject({ outcome: "APPLIED", orderStatus: "REFUND" });
    expect(await world.prisma.order.findFirstOrThrow({ where: { outTradeNo } })).toMatchObject({
      status: "REFUND",
      refundedTotal: 100,
    });
  });
});

describe("the REVIEW timeline entry names the sub-merchant, for a human reading the review", () => {
  it("a payment of the sub-merchant's own order in review (AMOUNT_MISMATCH), APIv2", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: SUB_B });
    const job = v2Payment(world, { outTradeNo, total: 99, partner: { subMchid: SUB_B } });
    expect((await inline(world).deliver(job)).apply?.outcome).toBe("AMOUNT_MISMATCH");
    expect(await applyEventOf(job.id)).toMatchObject({
      kind: "REVIEW",
      detail: { outcome: "AMOUNT_MISMATCH", subMchid: SUB_B },
    });
  });

  it("a refund: the sub-merchant's own refund of more than was paid", async () => {
    const { outTradeNo, transactionId } = await paidOrder(SUB_B);
    const tooMuch = v2Refund(world, {
      outTradeNo,
      transactionId,
      refund: 100,
      total: 90,
      partner: { subMchid: SUB_B },
    });
    expect((await inline(world).deliver(tooMuch)).apply?.outcome).toBe("REFUND_AMOUNT_MISMATCH");
    expect(await applyEventOf(tooMuch.id)).toMatchObject({
      kind: "REVIEW",
      detail: { outcome: "REFUND_AMOUNT_MISMATCH", subMchid: SUB_B },
    });
  });

  it("only where there is one: a direct merchant's review, and a sub-merchant's applied payment, carry none", async () => {
    const direct = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const review = v3Payment(world, { outTradeNo: direct, total: 99 });
    expect((await inline(world).deliver(review)).apply?.outcome).toBe("AMOUNT_MISMATCH");
    const reviewEvent = await applyEventOf(review.id);
    expect(reviewEvent.kind).toBe("REVIEW");
    expect(reviewEvent.detail).not.toHaveProperty("subMchid");

    const { outTradeNo } = await paidOrder(SUB_A);
    const applied = await world.prisma.notification.findFirstOrThrow({ where: { outTradeNo } });
    const appliedEvent = await applyEventOf(applied.id);
    expect(appliedEvent.kind).toBe("APPLIED");
    expect(appliedEvent.detail).not.toHaveProperty("subMchid");
  });
});

/**
 * An APIv2 refund is not signed: req_info, decrypted with the service provider's APIv2 key, is its only proof, and the
 * outer sub_mch_id lies outside it. Anyone holding one genuine refund notification of sub-merchant A can resend it with
 * sub_mch_id B; the refund then looks up B's order under A's out_trade_no. The refund's transaction_id is inside
 * req_info: when an order (or a second charge) of another sub-merchant of this service provider holds it, the outer
 * sub_mch_id is not the refund's — SUB_MCHID_MISMATCH, permanent (dead-lettered), nothing written on either order.
 */
describe("APIv2 refund resent under another sub-merchant's sub_mch_id (the outer field is not signed)", () => {
  /** Order `outTradeNo` of sub-merchant `sub`, paid by its own payment of `transactionId` (or left NOTPAY). */
  async function orderOfSub(sub: string, outTradeNo: string, transactionId: string | null): Promise<void> {
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 }, subMchid: sub });
    if (transactionId === null) return;
    const job = v2Payment(world, { outTradeNo, transactionId, partner: { subMchid: sub } });
    expect((await inline(world).deliver(job)).apply?.outcome).toBe("APPLIED");
  }

  /** What sub-merchant B's order and every refund under the number hold, to show nothing was written. */
  async function stateOf(outTradeNo: string) {
    const orders = await world.prisma.order.findMany({
      where: { outTradeNo },
      select: { subMchid: true, status: true, refundedTotal: true, reviewReason: true, transactionId: true },
      orderBy: { subMchid: "asc" },
    });
    const refunds = await world.prisma.refund.findMany({
      where: { outTradeNo },
      select: { order: { select: { subMchid: true } }, outRefundNo: true, status: true, reviewReason: true },
      orderBy: { createdAt: "asc" },
    });
    return { orders, refunds };
  }

  /** Parses `job` and runs its apply job once with the window in the given state; what it threw. */
  async function applyOnce(job: ReturnType<typeof v2Refund>, windowOver: boolean): Promise<unknown> {
    const run = inline(world);
    const { applyJob } = await run.parse(job);
    if (!applyJob) throw new Error("the refund should have an apply job");
    return run.apply(applyJob, { windowOver }).then(
      (result) => result,
      (error: unknown) => error,
    );
  }

  it("a refund whose req_info names no transaction_id (WeChat always sends one: it is the only anchor the outer sub_mch_id is checked against) is PAYLOAD_INVALID at parse, nothing written", async () => {
    const outTradeNo = "SUBX-0";
    await orderOfSub(SUB_A, outTradeNo, "4200000000SUBXA0");
    await orderOfSub(SUB_B, outTradeNo, "4200000000SUBXB0");
    const before = await stateOf(outTradeNo);
    const refund = { outTradeNo, transactionId: "", outRefundNo: "RF-x0", refund: 40, total: 100 };
    for (const sub of [SUB_A, SUB_B]) {
      const job = v2Refund(world, { ...refund, partner: { subMchid: sub } });
      await expect(inline(world).parse(job), sub).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
    }
    expect(await stateOf(outTradeNo)).toEqual(before);
  });

  it("B's order paid by another transaction: SUB_MCHID_MISMATCH at once, no review, nothing on B's order", async () => {
    const outTradeNo = "SUBX-1";
    await orderOfSub(SUB_A, outTradeNo, "4200000000SUBXA1");
    await orderOfSub(SUB_B, outTradeNo, "4200000000SUBXB1");
    const refund = { outTradeNo, transactionId: "4200000000SUBXA1", outRefundNo: "RF-x1", refundId: "5000subx1" };
    const genuine = v2Refund(world, { ...refund, refund: 40, total: 100, partner: { subMchid: SUB_A } });
    expect((await inline(world).deliver(genuine)).apply?.outcome).toBe("APPLIED");
    const before = await stateOf(outTradeNo);

    const forged = v2Refund(world, { ...refund, refund: 40, total: 100, partner: { subMchid: SUB_B } });
    // Within the window (before: TRANSACTION_NOT_SEEN, waited for) and past it (before: TRANSACTION_MISMATCH, REVIEW).
    for (const windowOver of [false, true]) {
      expect(await applyOnce(forged, windowOver), `windowOver ${windowOver}`).toMatchObject({
        code: "SUB_MCHID_MISMATCH",
        policy: "stop",
      });
    }
    expect(await stateOf(outTradeNo)).toEqual(before);
    const row = await rowOf(forged.id);
    expect(row.status).not.toBe("REVIEW");
    expect(row.errorCode).not.toBe("TRANSACTION_MISMATCH");
    const reviews = await world.prisma.notificationEvent.count({
      where: { notificationId: forged.id, kind: "REVIEW" },
    });
    expect(reviews).toBe(0);
  });

  it("B's order not paid: A's REFUNDCLOSE resent under B records no closed refund on B's order", async () => {
    const outTradeNo = "SUBX-2";
    await orderOfSub(SUB_A, outTradeNo, "4200000000SUBXA2");
    await orderOfSub(SUB_B, outTradeNo, null);
    const forged = v2Refund(world, {
      outTradeNo,
      transactionId: "4200000000SUBXA2",
      outRefundNo: "RF-x2",
      refund: 100,
      total: 100,
      refundStatus: "REFUNDCLOSE",
      partner: { subMchid: SUB_B },
    });
    const before = await stateOf(outTradeNo);
    const run = inline(world);
    const { parse, applyJob } = await run.parse(forged);
    expect(parse.outcome).not.toBe("IGNORED");
    if (!applyJob) throw new Error("the refund should have an apply job");
    await expect(run.apply(applyJob)).rejects.toMatchObject({ code: "SUB_MCHID_MISMATCH", policy: "stop" });
    expect(await stateOf(outTradeNo)).toEqual(before);
    expect(run.published).toEqual([]);
  });

  it("neither order paid yet: A's REFUNDCLOSE resent under B waits (ORDER_NOT_PAID), writing nothing; once A's payment lands it is refused, and A's own REFUNDCLOSE is recorded on A's order", async () => {
    const outTradeNo = "SUBX-5";
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 }, subMchid: SUB_A });
    await orderOfSub(SUB_B, outTradeNo, null);
    const refund = {
      outTradeNo,
      transactionId: "4200000000SUBXA5",
      outRefundNo: "RF-x5",
      refundId: "5000subx5",
      refund: 100,
      total: 100,
      refundStatus: "REFUNDCLOSE" as const,
    };
    const forged = v2Refund(world, { ...refund, partner: { subMchid: SUB_B } });
    const genuine = v2Refund(world, { ...refund, partner: { subMchid: SUB_A } });
    const run = inline(world);
    const forgedApply = (await run.parse(forged)).applyJob;
    const genuineApply = (await run.parse(genuine)).applyJob;
    if (!forgedApply || !genuineApply) throw new Error("the refunds should have apply jobs");
    const before = await stateOf(outTradeNo);
    // Before: the copy was REFUND_CLOSED at once — a CLOSED Refund row on B's order, the notification REVIEW,
    // refund.closed published naming B's order.
    for (const job of [forgedApply, genuineApply]) {
      await expect(run.apply(job, { windowOver: false })).rejects.toMatchObject({
        code: "ORDER_NOT_PAID",
        policy: "window",
      });
    }
    expect(await stateOf(outTradeNo)).toEqual(before);
    expect(run.published).toEqual([]);

    const payment = v2Payment(world, { outTradeNo, transactionId: "4200000000SUBXA5", partner: { subMchid: SUB_A } });
    expect((await run.deliver(payment)).apply?.outcome).toBe("APPLIED");
    await expect(run.apply(forgedApply, { windowOver: false })).rejects.toMatchObject({ code: "SUB_MCHID_MISMATCH" });
    expect((await run.apply(genuineApply, { windowOver: false })).outcome).toBe("REFUND_CLOSED");
    const after = await stateOf(outTradeNo);
    expect(after.orders).toMatchObject([
      { subMchid: SUB_A, status: "SUCCESS", refundedTotal: 0, transactionId: "4200000000SUBXA5" },
      { subMchid: SUB_B, status: "NOTPAY", refundedTotal: 0, reviewReason: null, transactionId: null },
    ]);
    expect(after.refunds).toEqual([
      { order: { subMchid: SUB_A }, outRefundNo: "RF-x5", status: "CLOSED", reviewReason: null },
    ]);
    expect((await rowOf(forged.id)).status).not.toBe("REVIEW");
    expect(run.published.map((e) => e.type)).toEqual(["payment.succeeded", "refund.closed"]);
  });

  it("the refund of A's second charge (DUPLICATE_PAYMENT) resent under B is not recorded on B's order", async () => {
    const outTradeNo = "SUBX-3";
    await orderOfSub(SUB_A, outTradeNo, "4200000000SUBXA3");
    await orderOfSub(SUB_B, outTradeNo, "4200000000SUBXB3");
    const second = v2Payment(world, {
      outTradeNo,
      transactionId: "4200000000SUBXA32",
      partner: { subMchid: SUB_A },
    });
    expect((await inline(world).deliver(second)).apply?.outcome).toBe("DUPLICATE_PAYMENT");
    const before = await stateOf(outTradeNo);
    const forged = v2Refund(world, {
      outTradeNo,
      transactionId: "4200000000SUBXA32",
      outRefundNo: "RF-x3",
      refund: 100,
      total: 100,
      partner: { subMchid: SUB_B },
    });
    const run = inline(world);
    const { applyJob } = await run.parse(forged);
    if (!applyJob) throw new Error("the refund should have an apply job");
    await expect(run.apply(applyJob)).rejects.toMatchObject({ code: "SUB_MCHID_MISMATCH", policy: "stop" });
    expect(await stateOf(outTradeNo)).toEqual(before);
    expect(run.published).toEqual([]);

    // A's own refund of that charge is still the DUPLICATE_PAYMENT_REFUNDED the payment review asked for.
    const genuine = v2Refund(world, {
      outTradeNo,
      transactionId: "4200000000SUBXA32",
      outRefundNo: "RF-x3",
      refund: 100,
      total: 100,
      partner: { subMchid: SUB_A },
    });
    expect((await inline(world).deliver(genuine)).apply?.outcome).toBe("DUPLICATE_PAYMENT_REFUNDED");
  });

  it("a direct order's second charge named by a refund under sub-merchant B is SUB_MCHID_MISMATCH, as its payment is", async () => {
    const outTradeNo = "SUBX-D5";
    await orderOfSub(SUB_B, outTradeNo, "4200000000SUBXB5D");
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 } });
    const direct = v2Payment(world, { outTradeNo, transactionId: "4200000000SUBXD5" });
    expect((await inline(world).deliver(direct)).apply?.outcome).toBe("APPLIED");
    const second = v2Payment(world, { outTradeNo, transactionId: "4200000000SUBXD52" });
    expect((await inline(world).deliver(second)).apply?.outcome).toBe("DUPLICATE_PAYMENT");
    const before = await stateOf(outTradeNo);
    for (const [transactionId, outRefundNo] of [
      ["4200000000SUBXD5", "RF-x5a"],
      ["4200000000SUBXD52", "RF-x5b"],
    ] as const) {
      const forged = v2Refund(world, {
        outTradeNo,
        transactionId,
        outRefundNo,
        refund: 100,
        total: 100,
        partner: { subMchid: SUB_B },
      });
      // Before, the second charge's: TRANSACTION_MISMATCH, a review naming B's order.
      for (const windowOver of [false, true]) {
        expect(await applyOnce(forged, windowOver), `${transactionId} windowOver ${windowOver}`).toMatchObject({
          code: "SUB_MCHID_MISMATCH",
          policy: "stop",
        });
      }
    }
    expect(await stateOf(outTradeNo)).toEqual(before);
  });

  it("out of order: before A's payment is applied nothing tells the copy apart — it waits, writing nothing; once A's payment lands it is refused, and A's own refund applies", async () => {
    const outTradeNo = "SUBX-4";
    await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 }, subMchid: SUB_A });
    await orderOfSub(SUB_B, outTradeNo, "4200000000SUBXB4");
    const refund = { outTradeNo, transactionId: "4200000000SUBXA4", outRefundNo: "RF-x4", refundId: "5000subx4" };
    const forged = v2Refund(world, { ...refund, refund: 100, total: 100, partner: { subMchid: SUB_B } });
    const genuine = v2Refund(world, { ...refund, refund: 100, total: 100, partner: { subMchid: SUB_A } });
    const run = inline(world);
    const forgedApply = (await run.parse(forged)).applyJob;
    const genuineApply = (await run.parse(genuine)).applyJob;
    if (!forgedApply || !genuineApply) throw new Error("the refunds should have apply jobs");
    const before = await stateOf(outTradeNo);
    // Both arrive before A's payment: the copy names a transaction B's order does not hold (it may be a second charge
    // still to come), A's own refund an order not paid yet; both wait within the window, writing nothing.
    await expect(run.apply(forgedApply, { windowOver: false })).rejects.toMatchObject({
      code: "TRANSACTION_NOT_SEEN",
      policy: "window",
    });
    await expect(run.apply(genuineApply, { windowOver: false })).rejects.toMatchObject({
      code: "ORDER_NOT_PAID",
      policy: "window",
    });
    expect(await stateOf(outTradeNo)).toEqual(before);

    const payment = v2Payment(world, { outTradeNo, transactionId: "4200000000SUBXA4", partner: { subMchid: SUB_A } });
    expect((await run.deliver(payment)).apply?.outcome).toBe("APPLIED");
    await expect(run.apply(forgedApply, { windowOver: false })).rejects.toMatchObject({ code: "SUB_MCHID_MISMATCH" });
    expect((await run.apply(genuineApply, { windowOver: false })).outcome).toBe("APPLIED");
    const after = await stateOf(outTradeNo);
    expect(after.orders).toMatchObject([
      { subMchid: SUB_A, status: "REFUND", refundedTotal: 100 },
      { subMchid: SUB_B, status: "SUCCESS", refundedTotal: 0, reviewReason: null },
    ]);
    expect(after.refunds).toEqual([
      { order: { subMchid: SUB_A }, outRefundNo: "RF-x4", status: "SUCCESS", reviewReason: null },
    ]);
  });
});
