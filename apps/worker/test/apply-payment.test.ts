import { paymentStatement } from "@wpn/db";
import { applyJobSchema } from "@wpn/queue";
import { whileRowChanges } from "@wpn/testing";
import { isWechatPayError, MAX_OUT_TRADE_NO_LENGTH } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { paymentEvent } from "../src/domain/publish-events.ts";
import { toWorkerError, WorkerError } from "../src/errors.ts";
import {
  createWorld,
  inline,
  orderOf,
  seedOrder,
  seedSkus,
  stockOf,
  V2_PAYER_OPENID,
  v2Payment,
  v2Refund,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";

let world: World;
beforeAll(async () => {
  world = await createWorld("wpay");
  await seedSkus(world.prisma, { A: 100, B: 50, C: 1, D: 5 });
});
afterAll(() => world.cleanup());

async function eventsOf(id: string) {
  const rows = await world.prisma.notificationEvent.findMany({ where: { notificationId: id }, orderBy: { id: "asc" } });
  return rows.map((r) => r.kind);
}

describe("payment success", () => {
  it("v3 TRANSACTION.SUCCESS: NOTPAY → SUCCESS, stock taken per item, one movement per SKU, notification APPLIED", async () => {
    const before = await stockOf(world.prisma);
    const otn = await seedOrder(world, { amountTotal: 2_500, items: { A: 2, B: 3 } });
    const job = v3Payment(world, { outTradeNo: otn, total: 2_500, transactionId: "4200000001" });
    const { parse, apply } = await inline(world).deliver(job);
    expect(parse.outcome).toBe("QUEUED");
    expect(apply?.outcome).toBe("APPLIED");

    const order = await orderOf(world.prisma, otn);
    expect(order.status).toBe("SUCCESS");
    expect(order.transactionId).toBe("4200000001");
    expect(order.payerOpenid).toBe("oPayerOpenid123");
    expect(order.paidAt?.toISOString()).toBe("2026-11-30T02:34:56.000Z");
    expect(order.movements.map((m) => [m.skuId, m.delta, m.reason]).sort()).toEqual([
      ["A", -2, "PAYMENT"],
      ["B", -3, "PAYMENT"],
    ]);
    const after = await stockOf(world.prisma);
    expect(after.A).toBe((before.A ?? 0) - 2);
    expect(after.B).toBe((before.B ?? 0) - 3);

    const n = await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } });
    expect(n).toMatchObject({
      status: "APPLIED",
      eventType: "TRANSACTION.SUCCESS",
      apiVersion: "v3",
      outTradeNo: otn,
      transactionId: "4200000001",
      attempts: 1,
      body: job.body,
    });
    expect(n.headers).toMatchObject({ serial: world.merchant.publicKeyId });
    // The stored body is the envelope as received: the resource is still ciphertext.
    expect(n.body).not.toContain("oPayerOpenid123");
    expect(await eventsOf(job.id)).toEqual(["RECEIVED", "APPLIED"]);
    const received = await world.prisma.notificationEvent.findFirstOrThrow({
      where: { notificationId: job.id, kind: "RECEIVED" },
    });
    expect(received.detail).toMatchObject({ apiVersion: "v3", kind: "payment", eventType: "TRANSACTION.SUCCESS" });
    expect(received.at.getTime()).toBe(job.receivedAt);
  });

  it("v2 payment with result_code SUCCESS is applied the same way", async () => {
    const before = await stockOf(world.prisma);
    const otn = await seedOrder(world, { amountTotal: 300, items: { A: 1 } });
    const job = v2Payment(world, { outTradeNo: otn, total: 300 });
    const { apply } = await inline(world).deliver(job);
    expect(apply?.outcome).toBe("APPLIED");
    const order = await orderOf(world.prisma, otn);
    expect(order).toMatchObject({ status: "SUCCESS", payerOpenid: "oV2PayerOpenid" });
    expect(order.paidAt?.toISOString()).toBe("2026-11-30T02:34:56.000Z");
    expect((await stockOf(world.prisma)).A).toBe((before.A ?? 0) - 1);
    const n = await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } });
    expect(n).toMatchObject({ apiVersion: "v2", eventType: "TRANSACTION.SUCCESS", status: "APPLIED" });
  });

  it("a v2 payment whose sign does not match (a job that reached the queue without the ingress) is never applied", async () => {
    const otn = await seedOrder(world, { amountTotal: 1, items: { A: 1 } });
    const genuine = v2Payment(world, { outTradeNo: otn, total: 1 });
    expect(genuine.body).toMatch(/<sign>.*?<\/sign>/);
    const forged = [
      { ...genuine, body: genuine.body.replace(/<sign>.*?<\/sign>/, "") },
      {
        ...genuine,
        body: genuine.body.replace(/<sign>.*?<\/sign>/, "<sign>0123456789ABCDEF0123456789ABCDEF</sign>"),
      },
    ];
    // Retried within the window, not dead-lettered at once: this worker's key could be behind the ingress's.
    for (const job of forged) {
      await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "V2_SIGN_INVALID", policy: "window" });
    }
    expect((await orderOf(world.prisma, otn)).status).toBe("NOTPAY");
    // Without an APIv2 key nothing can be checked: refused as well.
    await expect(inline(world, { WECHATPAY_APIV2_KEY: "" }).parse(genuine)).rejects.toMatchObject({
      code: "APIV2_KEY_MISSING",
    });
  });

  it("a v3 payment with fields it is not applied with null, absent or unexpected is applied, not dead-lettered", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const fields = {
      attach: null,
      scene_info: null,
      trade_type: undefined,
      payer: null,
      amount: { total: 100, currency: "CNY", payer_total: null },
      promotion_detail: [
        { coupon_id: "1", amount: 10, goods_detail: [{ goods_id: "M1", quantity: 1, unit_price: 100 }] },
      ],
    };
    expect((await inline(world).deliver(v3Payment(world, { outTradeNo: otn, fields }))).apply?.outcome).toBe("APPLIED");
    expect(await orderOf(world.prisma, otn)).toMatchObject({ status: "SUCCESS", payerOpenid: null });
  });

  it("a v2 amount above WeChat's 32-bit int is PAYLOAD_INVALID at parse, not a DB_DATA dead letter at apply", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v2Payment(world, { outTradeNo: otn, total: 2 ** 31 });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
  });

  it("a v2 time_end not exactly yyyyMMddHHmmss, or not a real time, is PAYLOAD_INVALID at parse, the order left unpaid", async () => {
    const otn = await seedOrder(world, { items: { A: 1 } });
    for (const timeEnd of ["2014-0903 131540", "2014-09-03 13:15:40", "20140231131540", "20140903241540"]) {
      const job = v2Payment(world, { outTradeNo: otn, timeEnd });
      await expect(inline(world).parse(job), timeEnd).rejects.toMatchObject({
        code: "PAYLOAD_INVALID",
        policy: "stop",
      });
    }
    expect((await orderOf(world.prisma, otn)).status).toBe("NOTPAY");
  });

  it("an out_trade_no longer than the apply job carries is PAYLOAD_INVALID at parse (v3, v2), not a JOB_INVALID dead letter at apply", async () => {
    const tooLong = "T".repeat(MAX_OUT_TRADE_NO_LENGTH + 1);
    for (const job of [v3Payment(world, { outTradeNo: tooLong }), v2Payment(world, { outTradeNo: tooLong })]) {
      await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
    }
    // The longest accepted one makes an apply job the apply stage accepts.
    const { applyJob } = await inline(world).parse(
      v3Payment(world, { outTradeNo: "T".repeat(MAX_OUT_TRADE_NO_LENGTH) }),
    );
    expect(applyJobSchema.safeParse(applyJob).success).toBe(true);
  });

  it("a v2 payment signed before an APIv2 key rotation is checked with WECHATPAY_APIV2_KEY_PREVIOUS", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v2Payment(world, { outTradeNo: otn });
    const rotated = { WECHATPAY_APIV2_KEY: "z".repeat(32) };
    await expect(inline(world, rotated).parse(job)).rejects.toMatchObject({ code: "V2_SIGN_INVALID" });
    const { apply } = await inline(world, {
      ...rotated,
      WECHATPAY_APIV2_KEY_PREVIOUS: world.merchant.apiV2Key,
    }).deliver(job);
    expect(apply?.outcome).toBe("APPLIED");
  });

  it("v2 payment with result_code FAIL is recorded as IGNORED with no effect", async () => {
    const otn = await seedOrder(world, { items: { A: 1 } });
    const job = v2Payment(world, { outTradeNo: otn, resultCode: "FAIL" });
    const { parse, apply } = await inline(world).deliver(job);
    expect(parse).toMatchObject({ outcome: "IGNORED", reason: "RESULT_CODE_FAIL" });
    expect(apply).toBeNull();
    expect((await orderOf(world.prisma, otn)).status).toBe("NOTPAY");
    expect((await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).status).toBe("IGNORED");
  });

  it("a v3 transaction whose trade_state is not SUCCESS is ignored", async () => {
    const otn = await seedOrder(world, { items: { A: 1 } });
    const { parse } = await inline(world).deliver(v3Payment(world, { outTradeNo: otn, tradeState: "NOTPAY" }));
    expect(parse).toMatchObject({ outcome: "IGNORED", reason: "TRADE_STATE_NOTPAY" });
    expect((await orderOf(world.prisma, otn)).status).toBe("NOTPAY");
  });

  it("a v3 SUCCESS transaction without success_time (absent, null or empty) is PAYLOAD_INVALID at parse, never paid at another time", async () => {
    const otn = await seedOrder(world, { items: { A: 1 } });
    for (const successTime of [undefined, null, ""]) {
      const job = v3Payment(world, { outTradeNo: otn, fields: { success_time: successTime } });
      await expect(inline(world).parse(job), String(successTime)).rejects.toMatchObject({
        code: "PAYLOAD_INVALID",
        policy: "stop",
      });
    }
    expect((await orderOf(world.prisma, otn)).status).toBe("NOTPAY");
    // The states that are not a payment carry no success_time and are still ignored, not refused.
    const { parse } = await inline(world).parse(
      v3Payment(world, { outTradeNo: otn, tradeState: "CLOSED", fields: { success_time: undefined } }),
    );
    expect(parse).toMatchObject({ outcome: "IGNORED", reason: "TRADE_STATE_CLOSED" });
  });

  it("re-running the same notification (parse and apply again) changes nothing", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const job = v3Payment(world, { outTradeNo: otn });
    const run = inline(world);
    const first = await run.deliver(job);
    const stock = await stockOf(world.prisma);
    // The apply job runs again (BullMQ re-ran it after a crash), then the parse job (ingress re-enqueue).
    expect((await run.apply(first.applyJob!)).outcome).toBe("ALREADY");
    expect((await run.parse(job)).parse.outcome).toBe("ALREADY");
    expect(await stockOf(world.prisma)).toEqual(stock);
    expect((await orderOf(world.prisma, otn)).movements).toHaveLength(1);
    const n = await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } });
    expect(n).toMatchObject({ status: "APPLIED", attempts: 1 });
  });

  it("a second notification (another id) for the same transaction is DUPLICATE and moves nothing", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { B: 2 } });
    const first = v3Payment(world, { outTradeNo: otn, transactionId: "4200000002" });
    const again = v3Payment(world, { outTradeNo: otn, transactionId: "4200000002" });
    const run = inline(world);
    await run.deliver(first);
    const stock = await stockOf(world.prisma);
    expect((await run.deliver(again)).apply?.outcome).toBe("DUPLICATE");
    expect(await stockOf(world.prisma)).toEqual(stock);
    expect((await world.prisma.notification.findUniqueOrThrow({ where: { id: again.id } })).status).toBe("DUPLICATE");
    expect(await eventsOf(again.id)).toEqual(["RECEIVED", "DUPLICATE"]);
  });
});

describe("a second notification of the transaction the order holds", () => {
  // What the order keeps of its payment, reported otherwise by another signed notification of that transaction.
  const cases = [
    ["amount", { total: 99 }],
    ["currency", { currency: "USD" }],
    ["appid", { appid: "wxotherapp000000" }],
    ["payer", { fields: { payer: { openid: "oAnotherPayer" } } }],
  ] as const;
  for (const [fact, spec] of cases) {
    it(`another ${fact}: REVIEW / DUPLICATE_MISMATCH, the order and stock as the first payment left them`, async () => {
      const otn = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
      const txn = `4200000DM-${fact}`;
      const run = inline(world);
      expect((await run.deliver(v3Payment(world, { outTradeNo: otn, transactionId: txn }))).apply?.outcome).toBe(
        "APPLIED",
      );
      const order = await orderOf(world.prisma, otn);
      const stock = await stockOf(world.prisma);
      const other = v3Payment(world, { outTradeNo: otn, transactionId: txn, ...spec });
      const { apply, applyJob } = await run.deliver(other);
      // Before: DUPLICATE, no error code — the discrepancy went unseen.
      expect(apply).toEqual({ outcome: "DUPLICATE_MISMATCH", orderStatus: "SUCCESS", reviewReason: null });
      expect(await orderOf(world.prisma, otn)).toEqual(order);
      expect(await stockOf(world.prisma)).toEqual(stock);
      expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: other.id } })).toMatchObject({
        status: "REVIEW",
        errorCode: "DUPLICATE_MISMATCH",
        outTradeNo: otn,
        transactionId: txn,
      });
      expect(await eventsOf(other.id)).toEqual(["RECEIVED", "REVIEW"]);
      expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    });
  }

  it("the same facts under another API version are DUPLICATE: direct (v3 then v2) and partner (v2's openid is the provider's)", async () => {
    const direct = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const run = inline(world);
    const v3 = v3Payment(world, {
      outTradeNo: direct,
      transactionId: "4200000DM-direct",
      fields: { payer: { openid: "oV2PayerOpenid" } },
    });
    expect((await run.deliver(v3)).apply?.outcome).toBe("APPLIED");
    expect(
      (await run.deliver(v2Payment(world, { outTradeNo: direct, transactionId: "4200000DM-direct" }))).apply?.outcome,
    ).toBe("DUPLICATE");

    const sub = { subMchid: "1900000400", subAppid: "wxsub00000000004" };
    const partner = await seedOrder(world, { amountTotal: 100, items: { B: 1 }, ...sub });
    const spec = { outTradeNo: partner, transactionId: "4200000DM-partner", partner: sub };
    // One payer: v3's sp_openid is the payer under the provider's appid, which v2 names `openid`.
    const payer = { payer: { sp_openid: V2_PAYER_OPENID, sub_openid: "oSubPayer" } };
    expect((await run.deliver(v3Payment(world, { ...spec, fields: payer }))).apply?.outcome).toBe("APPLIED");
    expect((await orderOf(world.prisma, partner)).payerOpenid).toBe("oSubPayer");
    expect((await run.deliver(v2Payment(world, spec))).apply?.outcome).toBe("DUPLICATE");
    expect((await run.deliver(v3Payment(world, { ...spec, fields: payer }))).apply?.outcome).toBe("DUPLICATE");
  });

  it("partner: another payer of the order's transaction is DUPLICATE_MISMATCH too (v3 or v2), the order left alone", async () => {
    const sub = { subMchid: "1900000401", subAppid: "wxsub00000000005" };
    const otn = await seedOrder(world, { amountTotal: 100, items: { B: 1 }, ...sub });
    const spec = { outTradeNo: otn, transactionId: "4200000DM-partner-payer", partner: sub };
    const run = inline(world);
    const first = { payer: { sp_openid: "oSpPayerOne", sub_openid: "oSubPayerOne" } };
    expect((await run.deliver(v3Payment(world, { ...spec, fields: first }))).apply?.outcome).toBe("APPLIED");
    const order = await orderOf(world.prisma, otn);
    const cases = [
      [
        "v3, both ids another payer's",
        v3Payment(world, { ...spec, fields: { payer: { sp_openid: "oSpPayerTwo", sub_openid: "oSubPayerTwo" } } }),
      ],
      [
        "v3, the provider's id another payer's",
        v3Payment(world, { ...spec, fields: { payer: { sp_openid: "oSpPayerTwo" } } }),
      ],
      ["v2, its openid (the provider's) another payer's", v2Payment(world, spec)],
    ] as const;
    for (const [label, job] of cases) {
      // Before: DUPLICATE — in partner mode the payer was never compared.
      expect((await run.deliver(job)).apply?.outcome, label).toBe("DUPLICATE_MISMATCH");
    }
    expect(await orderOf(world.prisma, otn)).toEqual(order);
    // A report naming no payer names nothing to compare: DUPLICATE.
    expect((await run.deliver(v3Payment(world, { ...spec, fields: { payer: null } }))).apply?.outcome).toBe(
      "DUPLICATE",
    );
  });

  it("a redelivery of a payment in review for its amount is DUPLICATE: the order does not keep what was paid", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const run = inline(world);
    const spec = { outTradeNo: otn, transactionId: "4200000DM-review", total: 99 };
    expect((await run.deliver(v3Payment(world, spec))).apply?.outcome).toBe("AMOUNT_MISMATCH");
    const order = await orderOf(world.prisma, otn);
    expect((await run.deliver(v3Payment(world, spec))).apply?.outcome).toBe("DUPLICATE");
    expect(await orderOf(world.prisma, otn)).toEqual(order);
    // Compared with what was paid (99), not with the order: a report naming yet another amount is a discrepancy.
    expect((await run.deliver(v3Payment(world, { ...spec, total: 98 }))).apply?.outcome).toBe("DUPLICATE_MISMATCH");
  });

  it("a person settling the order's review (reviewReason cleared) leaves a redelivery of that payment DUPLICATE", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const run = inline(world);
    // v2 names this payer: the same payment delivered on both versions.
    const spec = {
      outTradeNo: otn,
      transactionId: "4200000DM-settled",
      total: 99,
      fields: { payer: { openid: "oV2PayerOpenid" } },
    };
    const first = await run.deliver(v3Payment(world, spec));
    expect(first.apply?.outcome).toBe("AMOUNT_MISMATCH");
    // The merchant accepts the 99 paid and settles the review by hand.
    await world.prisma.order.updateMany({
      where: { outTradeNo: otn },
      data: { status: "SUCCESS", reviewReason: null },
    });
    const order = await orderOf(world.prisma, otn);
    expect((await run.apply(first.applyJob!)).outcome).toBe("ALREADY");
    // Before: DUPLICATE_MISMATCH (REVIEW) for both — the order's 100 compared, as nothing said any more that 99 was paid.
    expect((await run.deliver(v3Payment(world, spec))).apply?.outcome).toBe("DUPLICATE");
    expect((await run.deliver(v2Payment(world, spec))).apply?.outcome).toBe("DUPLICATE");
    expect(await orderOf(world.prisma, otn)).toEqual(order);
  });

  it("an order paid before its payment's facts were recorded: its notification, not its reviewReason, says what was paid", async () => {
    const unrecorded = { paidTotal: null, paidCurrency: null, paidAppid: null, paidSubAppid: null };
    const run = inline(world);
    const inReview = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const spec = { outTradeNo: inReview, transactionId: "4200000DM-legacy-review", total: 99 };
    expect((await run.deliver(v3Payment(world, spec))).apply?.outcome).toBe("AMOUNT_MISMATCH");
    await world.prisma.order.updateMany({
      where: { outTradeNo: inReview },
      data: { ...unrecorded, status: "SUCCESS", reviewReason: null },
    });
    expect((await run.deliver(v3Payment(world, spec))).apply?.outcome).toBe("DUPLICATE");

    const accepted = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const paid = { outTradeNo: accepted, transactionId: "4200000DM-legacy-paid", total: 100 };
    expect((await run.deliver(v3Payment(world, paid))).apply?.outcome).toBe("APPLIED");
    await world.prisma.order.updateMany({ where: { outTradeNo: accepted }, data: unrecorded });
    expect((await run.deliver(v3Payment(world, paid))).apply?.outcome).toBe("DUPLICATE");
    expect((await run.deliver(v3Payment(world, { ...paid, total: 99 }))).apply?.outcome).toBe("DUPLICATE_MISMATCH");
  });

  it("a person editing a paid order's amount (a price correction) leaves a redelivery of its payment DUPLICATE", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const run = inline(world);
    const spec = { outTradeNo: otn, transactionId: "4200000DM-edited", total: 100 };
    expect((await run.deliver(v3Payment(world, spec))).apply?.outcome).toBe("APPLIED");
    await world.prisma.order.updateMany({ where: { outTradeNo: otn }, data: { amountTotal: 80 } });
    // Before: DUPLICATE_MISMATCH — the order's edited 80 compared with the 100 WeChat reports, again, of that payment.
    expect((await run.deliver(v3Payment(world, spec))).apply?.outcome).toBe("DUPLICATE");
    expect((await run.deliver(v3Payment(world, { ...spec, total: 80 }))).apply?.outcome).toBe("DUPLICATE_MISMATCH");
  });

  it("DUPLICATE_MISMATCH publishes payment.review with the code, fresh and re-derived", () => {
    const facts = {
      notificationId: "n-dupmismatch",
      outTradeNo: "T-dupmismatch",
      transactionId: "4200000000DM",
      mchid: world.merchant.mchid,
      appid: world.merchant.appid,
      subMchid: null,
      subAppid: null,
      total: 99,
      currency: "CNY",
      payerOpenid: null,
      payerSpOpenid: null,
      paidAt: 0,
    };
    const result = {
      outcome: "DUPLICATE_MISMATCH" as const,
      orderId: "o-dupmismatch",
      orderStatus: "SUCCESS",
      reviewReason: null,
      amountTotal: 100,
      moved: 0,
      notificationStatus: "PROCESSING",
      notificationCode: null,
      appliedAt: 1_764_000_000_000,
    };
    const expected = { type: "payment.review", reviewReason: "DUPLICATE_MISMATCH", orderStatus: "SUCCESS", amount: 99 };
    expect(paymentEvent(facts, result)).toMatchObject(expected);
    const rerun = {
      ...result,
      outcome: "ALREADY" as const,
      notificationStatus: "REVIEW",
      notificationCode: "DUPLICATE_MISMATCH",
    };
    expect(paymentEvent(facts, rerun)).toMatchObject(expected);
  });
});

describe("checks against the order: mismatch → PAYMENT_REVIEW, no stock", () => {
  const cases = [
    ["AMOUNT_MISMATCH", {}, { total: 99 }],
    ["CURRENCY_MISMATCH", {}, { currency: "USD" }],
    ["APPID_MISMATCH", {}, { appid: "wxotherapp000000" }],
    [
      "APPID_MISMATCH",
      { subMchid: "1900000200", subAppid: "wxsub00000000001" },
      { partner: { subMchid: "1900000200", subAppid: "wxsub00000000002" } },
    ],
  ] as const;
  for (const [reason, orderFields, paymentFields] of cases) {
    it(`${reason} (${JSON.stringify(paymentFields)})`, async () => {
      const before = await stockOf(world.prisma);
      const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, ...orderFields });
      const { apply } = await inline(world).deliver(
        v3Payment(world, { outTradeNo: otn, total: 100, ...paymentFields }),
      );
      expect(apply).toMatchObject({ outcome: reason, orderStatus: "PAYMENT_REVIEW", reviewReason: reason });
      const order = await orderOf(world.prisma, otn);
      expect(order).toMatchObject({ status: "PAYMENT_REVIEW", reviewReason: reason });
      // The money was taken: the payment is recorded so a human can refund it.
      expect(order.transactionId).not.toBeNull();
      expect(order.movements).toHaveLength(0);
      expect(await stockOf(world.prisma)).toEqual(before);
    });
  }

  it("a payment naming another merchant's or sub-merchant's order number is ORDER_NOT_FOUND: that order is left alone, whatever its state", async () => {
    const before = await stockOf(world.prisma);
    // Orders of merchant 1900009999, and of sub-merchant 1900000200: the world's merchant's payments name neither.
    const notPaid = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, mchid: "1900009999" });
    const otherSub = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: "1900000200" });
    const paid = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, mchid: "1900009999" });
    await world.prisma.order.updateMany({
      where: { outTradeNo: paid },
      data: { status: "SUCCESS", transactionId: "4200000000OWN", paidAt: new Date() },
    });
    const closed = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, mchid: "1900009999" });
    await world.prisma.order.updateMany({ where: { outTradeNo: closed }, data: { status: "CLOSED" } });
    const orders = await Promise.all([notPaid, otherSub, paid, closed].map((otn) => orderOf(world.prisma, otn)));
    for (const [otn, spec] of [
      [notPaid, {}],
      [otherSub, { partner: { subMchid: "1900000201" } }],
      [paid, {}],
      [closed, {}],
    ] as const) {
      // An order is its merchant's number (migration 20261207110002): the world's merchant has no order under it, so
      // this is a payment of an unknown order, retried within the window (the checkout may commit it late).
      const run = inline(world);
      const job = v3Payment(world, { outTradeNo: otn, total: 100, ...spec });
      const { applyJob } = await run.parse(job);
      if (!applyJob) throw new Error("the payment should have an apply job");
      await expect(run.apply(applyJob), otn).rejects.toMatchObject({ code: "ORDER_NOT_FOUND", policy: "window" });
      const n = await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } });
      expect(n, otn).toMatchObject({ appliedAt: null, outTradeNo: otn });
      expect(n.status, otn).not.toBe("REVIEW");
    }
    expect(await Promise.all([notPaid, otherSub, paid, closed].map((otn) => orderOf(world.prisma, otn)))).toEqual(
      orders,
    );
    expect(await stockOf(world.prisma)).toEqual(before);
  });

  it("two tenants' orders under one out_trade_no: each is paid and refunded by its own tenant's notifications", async () => {
    // Tenant B of the Merchant table names itself (so every merchant check passes) and tenant A's order number:
    // deliberately (an APIv2 sign is B's own) or because both numbered an order the same.
    const b = { mchid: "1900000555", appid: "wxtenantb0000001", apiV3Key: "b".repeat(32) };
    await world.prisma.merchant.create({ data: { ...b, apiV2Key: null } });
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const foreign = {
      ...v3Payment(world, {
        outTradeNo: otn,
        mchid: b.mchid,
        appid: b.appid,
        transactionId: "4200000000TENANTB",
        apiV3Key: Buffer.from(b.apiV3Key),
      }),
      mchid: b.mchid,
    };
    const run = inline(world);
    const { applyJob } = await run.parse(foreign);
    if (!applyJob) throw new Error("the payment should have an apply job");
    // B has no order under the number (yet): a payment of an unknown order; A's order is not looked at.
    await expect(run.apply(applyJob)).rejects.toMatchObject({ code: "ORDER_NOT_FOUND" });
    const ofTenant = (mchid: string) =>
      world.prisma.order.findFirstOrThrow({ where: { outTradeNo: otn, mchid }, include: { movements: true } });
    expect(await ofTenant(world.merchant.mchid)).toMatchObject({ status: "NOTPAY", transactionId: null });

    // B's checkout commits its own order under the number: B's payment applies to it, within its window.
    await seedOrder(world, { outTradeNo: otn, amountTotal: 100, items: { B: 1 }, mchid: b.mchid, appid: b.appid });
    expect((await run.apply(applyJob)).outcome).toBe("APPLIED");
    const own = v3Payment(world, { outTradeNo: otn, total: 100, transactionId: "4200000000TENANTA" });
    expect((await run.deliver(own)).apply?.outcome).toBe("APPLIED");
    const refund = v3Refund(world, { outTradeNo: otn, transactionId: "4200000000TENANTA", refund: 100, total: 100 });
    expect((await run.deliver(refund)).apply?.outcome).toBe("APPLIED");
    expect(await ofTenant(world.merchant.mchid)).toMatchObject({
      status: "REFUND",
      transactionId: "4200000000TENANTA",
      refundedTotal: 100,
    });
    // Each order's stock moved for its own items (A's refund put A's back: REFUND_RESTOCK_POLICY=full).
    expect((await ofTenant(world.merchant.mchid)).movements.map((m) => [m.skuId, m.reason])).toEqual([
      ["A", "PAYMENT"],
      ["A", "REFUND"],
    ]);
    expect(await ofTenant(b.mchid)).toMatchObject({
      status: "SUCCESS",
      transactionId: "4200000000TENANTB",
      refundedTotal: 0,
      movements: [expect.objectContaining({ skuId: "B", reason: "PAYMENT" })],
    });
  });

  it("TRANSACTION_CONFLICT: another tenant put this payment's transaction id on its own order first; this order is left alone", async () => {
    // Tenant A of the Merchant table signs a payment of its own order carrying the world merchant's transaction id.
    const a = { mchid: "1900000557", appid: "wxtenanta0000057", apiV3Key: "d".repeat(32) };
    await world.prisma.merchant.create({ data: { ...a, apiV2Key: null } });
    const aOrder = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, mchid: a.mchid, appid: a.appid });
    const txn = "4200000000VICTIM57";
    const forged = v3Payment(world, {
      outTradeNo: aOrder,
      ...a,
      apiV3Key: Buffer.from(a.apiV3Key),
      transactionId: txn,
    });
    expect((await inline(world).deliver({ ...forged, mchid: a.mchid })).apply?.outcome).toBe("APPLIED");

    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const before = await stockOf(world.prisma);
    const order = await orderOf(world.prisma, otn);
    const genuine = v3Payment(world, { outTradeNo: otn, total: 100, transactionId: txn });
    const run = inline(world);
    // Before: 23505 on Order_transactionId_key → DB_CONSTRAINT, dead-lettered; every replay the same.
    const { apply, applyJob } = await run.deliver(genuine);
    expect(apply).toMatchObject({ outcome: "TRANSACTION_CONFLICT", orderStatus: "NOTPAY" });
    expect(await orderOf(world.prisma, otn)).toEqual(order);
    expect(await stockOf(world.prisma)).toEqual(before);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: genuine.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "TRANSACTION_CONFLICT",
      outTradeNo: otn,
      transactionId: txn,
    });
    expect(await eventsOf(genuine.id)).toContain("REVIEW");
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
  });

  it("TRANSACTION_CONFLICT publishes payment.review with the code: the order's merchant hears its payment was not applied", () => {
    const facts = {
      notificationId: "n-conflict",
      outTradeNo: "T-conflict",
      transactionId: "4200000000SHARED",
      mchid: world.merchant.mchid,
      appid: world.merchant.appid,
      subMchid: null,
      subAppid: null,
      total: 100,
      currency: "CNY",
      payerOpenid: null,
      payerSpOpenid: null,
      paidAt: 0,
    };
    const result = {
      outcome: "TRANSACTION_CONFLICT" as const,
      orderId: "o-conflict",
      orderStatus: "NOTPAY",
      reviewReason: null,
      amountTotal: 100,
      moved: 0,
      notificationStatus: "PROCESSING",
      notificationCode: null,
      appliedAt: 1_764_000_000_000,
    };
    const expected = {
      type: "payment.review",
      reviewReason: "TRANSACTION_CONFLICT",
      orderStatus: "NOTPAY",
      amount: 100,
    };
    expect(paymentEvent(facts, result)).toMatchObject(expected);
    // A re-run job (ALREADY) re-derives it from what the first run recorded on the notification.
    const rerun = {
      ...result,
      outcome: "ALREADY" as const,
      notificationStatus: "REVIEW",
      notificationCode: "TRANSACTION_CONFLICT",
    };
    expect(paymentEvent(facts, rerun)).toMatchObject(expected);
  });

  it("a re-run of a notification decided MCHID_MISMATCH (before orders were per merchant) publishes no business event", () => {
    const facts = {
      notificationId: "n-other",
      outTradeNo: "T-other",
      transactionId: "4200000000OTHER",
      mchid: "1900000555",
      appid: "wxtenantb0000001",
      subMchid: null,
      subAppid: null,
      total: 1,
      currency: "CNY",
      payerOpenid: null,
      payerSpOpenid: null,
      paidAt: 0,
    };
    // The statement no longer answers MCHID_MISMATCH (another merchant's number is ORDER_NOT_FOUND), but a job
    // re-run (ALREADY) re-derives its event from what the first run recorded: that code still publishes nothing.
    const result = {
      outcome: "ALREADY" as const,
      orderId: "o-1",
      orderStatus: "SUCCESS",
      reviewReason: null,
      amountTotal: 100,
      moved: 0,
      notificationStatus: "REVIEW",
      notificationCode: "MCHID_MISMATCH",
      appliedAt: 1_764_000_000_000,
    };
    expect(paymentEvent(facts, result)).toBeNull();
    expect(paymentEvent(facts, { ...result, outcome: "AMOUNT_MISMATCH", orderStatus: "PAYMENT_REVIEW" })?.type).toBe(
      "payment.review",
    );
  });

  it("partner mode with matching sp_/sub_ ids is applied", async () => {
    const otn = await seedOrder(world, {
      amountTotal: 100,
      items: { A: 1 },
      subMchid: "1900000300",
      subAppid: "wxsub00000000003",
    });
    const { apply } = await inline(world).deliver(
      v3Payment(world, { outTradeNo: otn, partner: { subMchid: "1900000300", subAppid: "wxsub00000000003" } }),
    );
    expect(apply?.outcome).toBe("APPLIED");
    expect((await orderOf(world.prisma, otn)).payerOpenid).toBe("oSubPayer");
  });
});

describe("stock", () => {
  it("an order whose stock would go negative is paid but PAYMENT_REVIEW/OUT_OF_STOCK, and takes no stock at all", async () => {
    await world.prisma.sku.update({ where: { id: "C" }, data: { stock: 1 } });
    const before = await stockOf(world.prisma);
    // A is plentiful, C has 1 left and the order wants 2: all-or-nothing, so A is not taken either.
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1, C: 2 } });
    const { apply } = await inline(world).deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000003" }));
    expect(apply).toMatchObject({ outcome: "OUT_OF_STOCK", orderStatus: "PAYMENT_REVIEW" });
    const order = await orderOf(world.prisma, otn);
    expect(order).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "OUT_OF_STOCK",
      transactionId: "4200000003",
    });
    expect(order.movements).toHaveLength(0);
    expect(await stockOf(world.prisma)).toEqual(before);
  });

  it("the last unit goes to exactly one order; stock ends at zero, never below", async () => {
    await world.prisma.sku.update({ where: { id: "D" }, data: { stock: 3 } });
    const orders = await Promise.all([1, 2, 3].map(() => seedOrder(world, { amountTotal: 100, items: { D: 2 } })));
    const run = inline(world);
    const outcomes = [];
    for (const otn of orders) outcomes.push((await run.deliver(v3Payment(world, { outTradeNo: otn }))).apply?.outcome);
    expect(outcomes).toEqual(["APPLIED", "OUT_OF_STOCK", "OUT_OF_STOCK"]);
    expect((await stockOf(world.prisma)).D).toBe(1);
  });

  it("an idle worker's payment (a batch of one) takes the stock of the items a swap left while it waited for the order", async () => {
    const before = await stockOf(world.prisma);
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const { id } = await world.prisma.order.findFirstOrThrow({ where: { outTradeNo: otn } });
    const run = inline(world);
    const { applyJob } = await run.parse(v3Payment(world, { outTradeNo: otn }));
    if (!applyJob) throw new Error("the payment should have an apply job");
    // A same-price size swap (A → B) by the shop, committed while the payment waits for the order row.
    const swapItems = `WITH gone AS (DELETE FROM "OrderItem" WHERE "orderId" = $1)
      INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES ($1, 'B', 1)`;
    const result = await whileRowChanges(world.db, swapItems, [id], () => run.apply(applyJob));
    expect(result.outcome).toBe("APPLIED");
    const order = await orderOf(world.prisma, otn);
    expect(order.status).toBe("SUCCESS");
    expect(order.movements.map((m) => [m.skuId, m.delta])).toEqual([["B", -1]]);
    const after = await stockOf(world.prisma);
    expect({ A: after.A, B: after.B }).toEqual({ A: before.A, B: (before.B ?? 0) - 1 });
  });
});

describe("order state", () => {
  it("a payment for a CLOSED order is flagged PAYMENT_REVIEW / PAID_AFTER_CLOSE, not silently paid", async () => {
    const before = await stockOf(world.prisma);
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, status: "CLOSED" });
    const { apply } = await inline(world).deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000004" }));
    expect(apply?.outcome).toBe("PAID_AFTER_CLOSE");
    expect(await orderOf(world.prisma, otn)).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "PAID_AFTER_CLOSE",
      transactionId: "4200000004",
    });
    expect(await stockOf(world.prisma)).toEqual(before);
  });

  it("a different transaction for an already paid order goes to review and keeps the first transaction", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const run = inline(world);
    await run.deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000005" }));
    const { apply } = await run.deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000006" }));
    expect(apply?.outcome).toBe("DUPLICATE_PAYMENT");
    const order = await orderOf(world.prisma, otn);
    expect(order).toMatchObject({
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
      transactionId: "4200000005",
    });
    expect(order.movements).toHaveLength(1);
  });

  it("an unknown out_trade_no is a retryable ORDER_NOT_FOUND until the checkout commits the order", async () => {
    const run = inline(world);
    const job = v3Payment(world, { outTradeNo: "T-late-order", total: 100 });
    const { applyJob } = await run.parse(job);
    const error = await run.apply(applyJob!).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WorkerError);
    expect(error).toMatchObject({ code: "ORDER_NOT_FOUND", policy: "window" });
    // Redelivered meanwhile: parsed again (timeline says so), the same apply job follows.
    expect((await run.parse(job)).parse.outcome).toBe("QUEUED");
    await seedOrder(world, { outTradeNo: "T-late-order", amountTotal: 100, items: { A: 1 } });
    expect((await run.apply(applyJob!)).outcome).toBe("APPLIED");
    expect(await eventsOf(job.id)).toEqual(["RECEIVED", "PARSED", "APPLIED"]);
  });
});

describe("one transaction, one order: a second charge of another order is that order's", () => {
  /** Order A paid with a0 and charged a second time with `charge` (DUPLICATE_PAYMENT); its number. */
  async function chargedTwice(a0: string, charge: string): Promise<string> {
    const a = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo: a, transactionId: a0 }))).apply?.outcome).toBe("APPLIED");
    expect((await run.deliver(v3Payment(world, { outTradeNo: a, transactionId: charge }))).apply?.outcome).toBe(
      "DUPLICATE_PAYMENT",
    );
    return a;
  }

  it("an unpaid order's payment naming another order's second charge is TRANSACTION_CONFLICT: left alone, no stock", async () => {
    await chargedTwice("4200XC-A0-1", "4200XC-T-1");
    const b = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const order = await orderOf(world.prisma, b);
    const before = await stockOf(world.prisma);
    const job = v3Payment(world, { outTradeNo: b, transactionId: "4200XC-T-1" });
    // Before: APPLIED — B paid with the transaction already recorded as A's second charge, its stock taken.
    expect((await inline(world).deliver(job)).apply).toMatchObject({
      outcome: "TRANSACTION_CONFLICT",
      orderStatus: "NOTPAY",
    });
    expect(await orderOf(world.prisma, b)).toEqual(order);
    expect(await stockOf(world.prisma)).toEqual(before);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "TRANSACTION_CONFLICT",
    });
  });

  it("a paid order's payment naming another order's second charge is TRANSACTION_CONFLICT, not its own second charge", async () => {
    await chargedTwice("4200XC-A0-2", "4200XC-T-2");
    const c = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo: c, transactionId: "4200XC-C0-2" }))).apply?.outcome).toBe(
      "APPLIED",
    );
    // Before: DUPLICATE_PAYMENT — one transaction a second charge of two orders, C put in review for it.
    const job = v3Payment(world, { outTradeNo: c, transactionId: "4200XC-T-2" });
    expect((await run.deliver(job)).apply).toMatchObject({ outcome: "TRANSACTION_CONFLICT", orderStatus: "SUCCESS" });
    expect(await orderOf(world.prisma, c)).toMatchObject({ status: "SUCCESS", reviewReason: null });
  });

  it("and the other way round: a second charge naming another order's payment stays TRANSACTION_CONFLICT", async () => {
    const b = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo: b, transactionId: "4200XC-T-3" }))).apply?.outcome).toBe(
      "APPLIED",
    );
    const a = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    expect((await run.deliver(v3Payment(world, { outTradeNo: a, transactionId: "4200XC-A0-3" }))).apply?.outcome).toBe(
      "APPLIED",
    );
    expect((await run.deliver(v3Payment(world, { outTradeNo: a, transactionId: "4200XC-T-3" }))).apply?.outcome).toBe(
      "TRANSACTION_CONFLICT",
    );
    expect(await orderOf(world.prisma, a)).toMatchObject({ status: "SUCCESS", transactionId: "4200XC-A0-3" });
  });

  it("two deliveries committing at once: B's payment waits for A's second charge of the transaction, then conflicts", async () => {
    const a = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const run = inline(world);
    expect((await run.deliver(v3Payment(world, { outTradeNo: a, transactionId: "4200XC-A0-4" }))).apply?.outcome).toBe(
      "APPLIED",
    );
    const txn = "4200XC-T-4";
    const secondCharge = v3Payment(world, { outTradeNo: a, transactionId: txn });
    await run.parse(secondCharge);
    // Another SKU than A's: the statements share no SKU lock either (the payment locks its order's SKUs up front).
    const b = await seedOrder(world, { amountTotal: 100, items: { B: 1 } });
    const order = await orderOf(world.prisma, b);
    const { applyJob } = await run.parse(v3Payment(world, { outTradeNo: b, transactionId: txn }));
    if (!applyJob) throw new Error("the payment should have an apply job");
    // A's second charge (the worker's batch of one), uncommitted while B's payment statement runs: neither sees the
    // other in its snapshot, and they lock different orders, notifications and SKUs.
    const ofA = paymentStatement([
      {
        notificationId: secondCharge.id,
        outTradeNo: a,
        transactionId: txn,
        mchid: world.merchant.mchid,
        appid: world.merchant.appid,
        subMchid: null,
        subAppid: null,
        total: 100,
        currency: "CNY",
        payerOpenid: null,
        payerSpOpenid: null,
        paidAt: Date.now(),
      },
    ]);
    // Before: B APPLIED at once (no wait), the transaction both B's payment and A's second charge.
    // B's statement waits on the transaction's key for A's charge, then fails it: a retry, not a dead letter.
    const first = await whileRowChanges(world.db, ofA.text, ofA.values, () =>
      run.apply(applyJob).then(
        (result) => ({ decided: result.outcome, policy: null }),
        (error: unknown) => ({ decided: toWorkerError(error).code, policy: toWorkerError(error).policy }),
      ),
    );
    expect(first).toEqual({ decided: "DB_CONFLICT", policy: "retry" });
    // The queue's retry decides on a snapshot holding A's charge.
    expect(await run.apply(applyJob)).toMatchObject({ outcome: "TRANSACTION_CONFLICT", orderStatus: "NOTPAY" });
    expect(await orderOf(world.prisma, b)).toEqual(order);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: secondCharge.id } })).toMatchObject({
      status: "REVIEW",
      errorCode: "DUPLICATE_PAYMENT",
    });
  });
});

describe("published events (PUBLISH_EVENTS=true)", () => {
  it("a second transaction on an order in any state: payment.review with DUPLICATE_PAYMENT, fresh and re-derived, never the order's reason", async () => {
    await seedSkus(world.prisma, { EV0: 0 });
    const run = inline(world);
    // A refunded order, an order paid while out of stock, an order paid and still SUCCESS: each paid again.
    const refunded = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    await run.deliver(v3Payment(world, { outTradeNo: refunded, transactionId: "4200000000EV1" }));
    await run.deliver(
      v3Refund(world, { outTradeNo: refunded, transactionId: "4200000000EV1", refund: 100, total: 100 }),
    );
    const outOfStock = await seedOrder(world, { amountTotal: 100, items: { EV0: 1 } });
    await run.deliver(v3Payment(world, { outTradeNo: outOfStock, transactionId: "4200000000EV2" }));
    const paid = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    await run.deliver(v3Payment(world, { outTradeNo: paid, transactionId: "4200000000EV3" }));
    const cases = [
      { otn: refunded, txn: "4200000000EV1b", orderStatus: "REFUND" },
      { otn: outOfStock, txn: "4200000000EV2b", orderStatus: "PAYMENT_REVIEW" },
      { otn: paid, txn: "4200000000EV3b", orderStatus: "PAYMENT_REVIEW" },
    ];
    for (const c of cases) {
      const { apply, applyJob } = await run.deliver(v3Payment(world, { outTradeNo: c.otn, transactionId: c.txn }));
      expect(apply?.outcome).toBe("DUPLICATE_PAYMENT");
      const expected = {
        type: "payment.review",
        notificationId: applyJob?.notificationId,
        reviewReason: "DUPLICATE_PAYMENT",
        orderStatus: c.orderStatus,
        transactionId: c.txn,
      };
      // Before: the order's reviewReason — null for the refunded order, OUT_OF_STOCK for the other.
      expect(run.published.at(-1)).toMatchObject(expected);
      expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
      expect(run.published.at(-1)).toMatchObject(expected);
    }
    expect((await orderOf(world.prisma, outOfStock)).reviewReason).toBe("OUT_OF_STOCK");
  });

  for (const [i, order] of (["APIv3 first", "APIv2 first", "at once"] as const).entries()) {
    it(`a second charge reported on both APIs (two notification ids), ${order}: one payment.review, the other DUPLICATE`, async () => {
      const run = inline(world);
      const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
      await run.deliver(v3Payment(world, { outTradeNo, transactionId: `4200000000TW${i}a` }));
      const [v3, v2] = [
        v3Payment(world, { outTradeNo, transactionId: `4200000000TW${i}b` }),
        v2Payment(world, { outTradeNo, transactionId: `4200000000TW${i}b` }),
      ];
      const [first, second] = order === "APIv2 first" ? [v2, v3] : [v3, v2];
      const before = run.published.length;
      let outcomes: (string | undefined)[];
      if (order === "at once") {
        // Applied together: one batch, or two statements the order's row lock puts one after the other.
        const jobs = [(await run.parse(first)).applyJob!, (await run.parse(second)).applyJob!];
        outcomes = (await Promise.all(jobs.map((job) => run.apply(job)))).map((r) => r.outcome);
      } else {
        outcomes = [(await run.deliver(first)).apply?.outcome, (await run.deliver(second)).apply?.outcome];
      }
      // Before: DUPLICATE_PAYMENT twice — two REVIEW rows and two payment.review asking to refund one charge.
      expect(outcomes).toEqual(["DUPLICATE_PAYMENT", "DUPLICATE"]);
      expect(run.published.slice(before).map((e) => [e.type, e.notificationId, e.reviewReason])).toEqual([
        ["payment.review", first.id, "DUPLICATE_PAYMENT"],
      ]);
      const reviews = await world.prisma.notification.findMany({
        where: { outTradeNo, status: "REVIEW" },
        select: { id: true, errorCode: true },
      });
      expect(reviews).toEqual([{ id: first.id, errorCode: "DUPLICATE_PAYMENT" }]);
      expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: second.id } })).toMatchObject({
        status: "DUPLICATE",
        errorCode: null,
      });
      // The order's review stands; the charge's refund closes it as before.
      expect(await orderOf(world.prisma, outTradeNo)).toMatchObject({
        status: "PAYMENT_REVIEW",
        reviewReason: "DUPLICATE_PAYMENT",
      });
      const refund = v3Refund(world, { outTradeNo, transactionId: `4200000000TW${i}b`, refund: 100, total: 100 });
      expect((await run.deliver(refund)).apply).toMatchObject({
        outcome: "DUPLICATE_PAYMENT_REFUNDED",
        orderStatus: "SUCCESS",
      });
    });
  }

  it("a payment.succeeded re-derived after the order went to review says nothing of the order's review", async () => {
    const run = inline(world);
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const { applyJob } = await run.deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000000EV4" }));
    const first = run.published.at(-1);
    expect(first).toMatchObject({ type: "payment.succeeded", reviewReason: null, orderStatus: "SUCCESS" });
    await run.deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000000EV4b" }));
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    // Before: reviewReason DUPLICATE_PAYMENT, the other payment's code read from the order.
    expect(run.published.at(-1)).toMatchObject({
      type: "payment.succeeded",
      reviewReason: null,
      orderStatus: "PAYMENT_REVIEW",
    });
  });

  it("an event re-derived by a later run carries the commit time, not the re-run's", async () => {
    const run = inline(world);
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const { applyJob } = await run.deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000000EV5" }));
    const first = run.published.at(-1);
    const n = await world.prisma.notification.findUniqueOrThrow({ where: { id: applyJob!.notificationId } });
    expect(first?.occurredAt).toBe(n.appliedAt?.getTime());
    // The publish failed after the commit; the retry runs later, after the order was refunded.
    await run.deliver(v3Refund(world, { outTradeNo: otn, transactionId: "4200000000EV5", refund: 100, total: 100 }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await run.apply(applyJob!)).outcome).toBe("ALREADY");
    // Before: occurredAt was the re-run's Date.now().
    expect(run.published.at(-1)).toEqual({ ...first, orderStatus: "REFUND" });
  });
});

describe("notifications that cannot be opened", () => {
  it("a resource encrypted with another key is DECRYPT_FAILED, retried within the window (the key may be deployed late), and the row says so", async () => {
    const otn = await seedOrder(world, { items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo: otn, apiV3Key: Buffer.from("0".repeat(32)) });
    const error = await inline(world)
      .parse(job)
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ code: "DECRYPT_FAILED", policy: "window" });
    expect(isWechatPayError((error as WorkerError).cause)).toBe(true);
    expect(await world.prisma.notification.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({
      status: "FAILED",
      errorCode: "DECRYPT_FAILED",
      eventType: "TRANSACTION.SUCCESS",
    });
  });

  it("an APIv3 key rotated in the Merchant table: queued notifications open with the previous key, new ones with the new key at once", async () => {
    const m = { mchid: "1900000778", appid: "wxothermerchant02" };
    const [oldKey, newKey] = ["o".repeat(32), "n".repeat(32)];
    await world.prisma.merchant.create({ data: { ...m, apiV3Key: oldKey, apiV2Key: null } });
    const payment = async (key: string) => {
      const outTradeNo = await seedOrder(world, { items: { A: 1 }, ...m });
      return { ...v3Payment(world, { outTradeNo, ...m, apiV3Key: Buffer.from(key) }), mchid: m.mchid };
    };
    const cached = inline(world);
    // Parsed under the old key (this worker's key cache now holds it); applied after the rotation.
    const queued = await cached.parse(await payment(oldKey));
    const before = await payment(oldKey);
    await world.prisma.merchant.update({
      where: { mchid: m.mchid },
      data: { apiV3Key: newKey, apiV3KeyPrevious: oldKey },
    });
    if (!queued.applyJob) throw new Error("the payment should have an apply job");
    // A worker that reads the rotated row (a restart, an expired cache) opens the queued ones with the previous key.
    const fresh = inline(world);
    expect((await fresh.apply(queued.applyJob)).outcome).toBe("APPLIED");
    expect((await fresh.deliver(before)).apply?.outcome).toBe("APPLIED");
    // Encrypted with the new key while the cache still holds the old one: read afresh, not dead-lettered.
    expect((await cached.deliver(await payment(newKey))).apply?.outcome).toBe("APPLIED");
  });

  it("an APIv2 key added to a Merchant row after its keys were cached: v2 notifications open with the row read afresh", async () => {
    const m = { mchid: "1900000779", appid: "wxothermerchant03" };
    const apiV3Key = "m".repeat(32);
    await world.prisma.merchant.create({ data: { ...m, apiV3Key, apiV2Key: null } });
    const payment = async (api: "v2" | "v3") => {
      const outTradeNo = await seedOrder(world, { items: { A: 1 }, ...m });
      const job =
        api === "v2"
          ? v2Payment(world, { outTradeNo, ...m })
          : v3Payment(world, { outTradeNo, ...m, apiV3Key: Buffer.from(apiV3Key) });
      return { ...job, mchid: m.mchid };
    };
    // These workers hold the row's keys of before the edit (no APIv2 key) in their 60 s cache.
    const [parser, applier, refunder] = [inline(world), inline(world), inline(world)];
    for (const worker of [parser, applier, refunder]) {
      expect((await worker.deliver(await payment("v3"))).apply?.outcome).toBe("APPLIED");
    }
    // The operator adds the APIv2 key; the ingress reloads the row and answers WeChat SUCCESS for v2 notifications.
    await world.prisma.merchant.update({ where: { mchid: m.mchid }, data: { apiV2Key: world.merchant.apiV2Key } });
    const paid = await parser.parse(await payment("v2"));
    if (!paid.applyJob) throw new Error("the payment should have an apply job");
    expect((await applier.apply(paid.applyJob)).outcome).toBe("APPLIED");
    const refund = {
      ...v2Refund(world, { outTradeNo: "T-v2-key-added", transactionId: "4200000997", refund: 1, total: 1, ...m }),
      mchid: m.mchid,
    };
    await expect(refunder.parse(refund)).resolves.toMatchObject({ applyJob: { notificationId: refund.id } });
  });

  it("a Merchant row still without an APIv2 key once read afresh: APIV2_KEY_MISSING retried within the window", async () => {
    const m = { mchid: "1900000780", appid: "wxothermerchant04" };
    await world.prisma.merchant.create({ data: { ...m, apiV3Key: "w".repeat(32), apiV2Key: null } });
    const outTradeNo = await seedOrder(world, { items: { A: 1 }, ...m });
    await expect(
      inline(world).parse({ ...v2Payment(world, { outTradeNo, ...m }), mchid: m.mchid }),
    ).rejects.toMatchObject({ code: "APIV2_KEY_MISSING", policy: "window" });
    // The configured merchant's: a rolling deploy adding WECHATPAY_APIV2_KEY restarts ingresses before every
    // worker has it, so it is retried within the window too.
    const configured = await seedOrder(world, { items: { A: 1 } });
    await expect(
      inline(world, { WECHATPAY_APIV2_KEY: "" }).parse(v2Payment(world, { outTradeNo: configured })),
    ).rejects.toMatchObject({ code: "APIV2_KEY_MISSING", policy: "window" });
  });

  it("a notification for a merchant of the Merchant table is opened with that merchant's key", async () => {
    const other = { mchid: "1900000777", appid: "wxothermerchant01", apiV3Key: "k".repeat(32) };
    await world.prisma.merchant.create({ data: { ...other, apiV2Key: null } });
    const otn = await seedOrder(world, { items: { A: 1 }, mchid: other.mchid, appid: other.appid });
    const job = {
      ...v3Payment(world, {
        outTradeNo: otn,
        mchid: other.mchid,
        appid: other.appid,
        apiV3Key: Buffer.from(other.apiV3Key),
      }),
      mchid: other.mchid,
    };
    expect((await inline(world).deliver(job)).apply?.outcome).toBe("APPLIED");
  });

  it("a notification naming another merchant than the one whose keys authenticated it is refused, permanently", async () => {
    // An APIv2 sign is made with the merchant's own key: merchant B can sign XML naming merchant A and A's order.
    const otn = await seedOrder(world, { mchid: "1900009999", amountTotal: 100, items: { A: 1 } });
    const stock = await stockOf(world.prisma);
    for (const job of [
      v2Payment(world, { outTradeNo: otn, mchid: "1900009999" }),
      v3Payment(world, { outTradeNo: otn, mchid: "1900009999" }),
      v3Payment(world, { outTradeNo: otn, mchid: "1900009999", partner: { subMchid: "1900000200" } }),
      v3Refund(world, { outTradeNo: otn, transactionId: "4200000009", refund: 100, total: 100, mchid: "1900009999" }),
    ]) {
      await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID", policy: "stop" });
    }
    expect((await orderOf(world.prisma, otn)).status).toBe("NOTPAY");
    expect(await stockOf(world.prisma)).toEqual(stock);
  });

  it("an unknown merchant is MERCHANT_UNKNOWN (permanent)", async () => {
    const job = { ...v3Payment(world, { outTradeNo: "T-unknown-merchant" }), mchid: "1900000888" };
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "MERCHANT_UNKNOWN", policy: "stop" });
  });
});
