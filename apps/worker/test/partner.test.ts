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
    // The copy looks for A's order under the number: there is none.
    const { applyJob } = await run.parse(forged);
    if (!applyJob) throw new Error("the refund should have an apply job");
    await expect(run.apply(applyJob)).rejects.toMatchObject({ code: "ORDER_NOT_FOUND" });
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
