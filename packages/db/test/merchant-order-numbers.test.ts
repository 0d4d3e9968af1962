import {
  applyPaymentStatement,
  applyPaymentStatements,
  applyRefundStatement,
  type PrismaClient,
  type RefundFacts,
} from "@wpn/db";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APPID, insertNotification, MCHID, paymentFacts as pay } from "./support/payments.ts";

/**
 * WeChat makes out_trade_no unique per merchant (per sub-merchant under a service provider in partner mode), and a
 * deployment serves several: an order is (mchid, subMchid, outTradeNo). Two merchants — or two sub-merchants of one
 * service provider — each have their own order "1001"; each one's payments and refunds find that merchant's order,
 * never the other's, and a notification naming a number only another merchant has is a payment or refund of an
 * unknown order (ORDER_NOT_FOUND: nothing done, the worker waits for the order).
 */

const OTHER_MCHID = "1900000888";
const SP_MCHID = "1900000999";
const SUB_A = "1900001001";
const SUB_B = "1900001002";
const NUMBER = "1001";

let tdb: TestDatabase;
let prisma: PrismaClient;
beforeAll(async () => {
  tdb = await createTestDatabase("dbmerchantotn");
  prisma = tdb.db.prisma;
});
afterAll(async () => {
  await tdb?.drop();
});

interface Owner {
  mchid: string;
  subMchid: string | null;
}

/** Each test uses its own numbers' suffix, so the tests share one schema. */
async function seedOrder(id: string, outTradeNo: string, owner: Owner, paidBy: string | null = null): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "subMchid", "amountTotal", status, "transactionId")
    VALUES (${id}, ${outTradeNo}, ${owner.mchid}, ${APPID}, ${owner.subMchid}, 300,
            ${paidBy === null ? "NOTPAY" : "SUCCESS"}::"OrderStatus", ${paidBy})`;
}

async function orderOf(id: string) {
  const [row] = await prisma.$queryRaw<
    { status: string; transactionId: string | null; reviewReason: string | null; refundedTotal: number }[]
  >`SELECT status::text, "transactionId", "reviewReason", "refundedTotal" FROM "Order" WHERE id = ${id}`;
  return row;
}

async function notificationOf(id: string) {
  const [row] = await prisma.$queryRaw<{ status: string; errorCode: string | null }[]>`
    SELECT status::text, "errorCode" FROM "Notification" WHERE id = ${id}`;
  return row;
}

function refund(nid: string, outTradeNo: string, owner: Owner, txn: string, overrides: Partial<RefundFacts> = {}) {
  return {
    notificationId: nid,
    outTradeNo,
    outRefundNo: "RF-1",
    refundId: `5000-${nid}`,
    transactionId: txn,
    mchid: owner.mchid,
    subMchid: owner.subMchid,
    status: "SUCCESS",
    amountRefund: 100,
    amountTotal: 300,
    successAt: Date.UTC(2026, 11, 1, 3, 0, 0),
    restockOnFullRefund: false,
    ...overrides,
  } satisfies RefundFacts;
}

describe("one out_trade_no per merchant (real PostgreSQL)", () => {
  it("two direct merchants each have order 1001, each paid by its own merchant's payment", async () => {
    const a = { mchid: MCHID, subMchid: null };
    const b = { mchid: OTHER_MCHID, subMchid: null };
    await seedOrder("d-a", NUMBER, a);
    await seedOrder("d-b", NUMBER, b);
    await insertNotification(prisma, "d-pay-b");
    await insertNotification(prisma, "d-pay-a");
    // One batch, B's payment first: each finds its own merchant's order.
    const results = await applyPaymentStatements(prisma, [
      pay("d-pay-b", NUMBER, { ...b, transactionId: "4200-d-b" }),
      pay("d-pay-a", NUMBER, { ...a, transactionId: "4200-d-a" }),
    ]);
    expect(results).toMatchObject([
      { outcome: "APPLIED", orderId: "d-b", orderStatus: "SUCCESS" },
      { outcome: "APPLIED", orderId: "d-a", orderStatus: "SUCCESS" },
    ]);
    expect(await orderOf("d-a")).toMatchObject({ status: "SUCCESS", transactionId: "4200-d-a", reviewReason: null });
    expect(await orderOf("d-b")).toMatchObject({ status: "SUCCESS", transactionId: "4200-d-b", reviewReason: null });
  });

  it("two sub-merchants of one service provider each have order 1001, each paid by its own payment", async () => {
    const a = { mchid: SP_MCHID, subMchid: SUB_A };
    const b = { mchid: SP_MCHID, subMchid: SUB_B };
    const number = `${NUMBER}-p`;
    await seedOrder("p-a", number, a);
    await seedOrder("p-b", number, b);
    // The service provider's own (direct) order under the number too: a null sub-merchant is one more owner.
    await seedOrder("p-sp", number, { mchid: SP_MCHID, subMchid: null });
    await insertNotification(prisma, "p-pay-a");
    await insertNotification(prisma, "p-pay-b");
    expect(
      await applyPaymentStatement(prisma, pay("p-pay-a", number, { ...a, transactionId: "4200-p-a" })),
    ).toMatchObject({ outcome: "APPLIED", orderId: "p-a" });
    expect(
      await applyPaymentStatement(prisma, pay("p-pay-b", number, { ...b, transactionId: "4200-p-b" })),
    ).toMatchObject({ outcome: "APPLIED", orderId: "p-b" });
    expect(await orderOf("p-a")).toMatchObject({ status: "SUCCESS", transactionId: "4200-p-a" });
    expect(await orderOf("p-b")).toMatchObject({ status: "SUCCESS", transactionId: "4200-p-b" });
    expect(await orderOf("p-sp")).toMatchObject({ status: "NOTPAY", transactionId: null });
  });

  it("a payment naming a number only another merchant (or sub-merchant) has is ORDER_NOT_FOUND; that order is untouched", async () => {
    const number = `${NUMBER}-u`;
    await seedOrder("u-a", number, { mchid: SP_MCHID, subMchid: SUB_A });
    for (const [nid, owner] of [
      ["u-pay-other", { mchid: OTHER_MCHID, subMchid: null }],
      ["u-pay-sub", { mchid: SP_MCHID, subMchid: SUB_B }],
      ["u-pay-sp", { mchid: SP_MCHID, subMchid: null }],
    ] as const) {
      await insertNotification(prisma, nid);
      const result = await applyPaymentStatement(prisma, pay(nid, number, { ...owner, transactionId: `4200-${nid}` }));
      expect(result, nid).toMatchObject({ outcome: "ORDER_NOT_FOUND", orderId: null });
      // Nothing done: the notification waits for its order, as for any unknown number.
      expect(await notificationOf(nid), nid).toMatchObject({ status: "PROCESSING", errorCode: null });
    }
    expect(await orderOf("u-a")).toMatchObject({ status: "NOTPAY", transactionId: null, reviewReason: null });
  });

  it("refunds: each merchant's refund RF-1 of its order 1001 is its own; another merchant's number is ORDER_NOT_FOUND", async () => {
    const a = { mchid: MCHID, subMchid: null };
    const b = { mchid: OTHER_MCHID, subMchid: null };
    const number = `${NUMBER}-r`;
    await seedOrder("r-a", number, a, "4200-r-a");
    await seedOrder("r-b", number, b, "4200-r-b");
    await insertNotification(prisma, "r-ref-b", "REFUND.SUCCESS");
    await insertNotification(prisma, "r-ref-a", "REFUND.SUCCESS");
    expect(await applyRefundStatement(prisma, refund("r-ref-b", number, b, "4200-r-b"))).toMatchObject({
      outcome: "APPLIED",
      orderId: "r-b",
      refundedTotal: 100,
    });
    expect(await orderOf("r-a")).toMatchObject({ status: "SUCCESS", refundedTotal: 0 });
    // A's refund under the same out_refund_no is a refund of its own, not a conflict with B's.
    expect(
      await applyRefundStatement(prisma, refund("r-ref-a", number, a, "4200-r-a", { amountRefund: 300 })),
    ).toMatchObject({ outcome: "APPLIED", orderId: "r-a", refundedTotal: 300, orderStatus: "REFUND" });
    expect(await orderOf("r-b")).toMatchObject({ status: "SUCCESS", refundedTotal: 100 });
    const refunds = await prisma.$queryRaw<{ orderId: string; amountRefund: number }[]>`
      SELECT "orderId", "amountRefund" FROM "Refund" WHERE "outTradeNo" = ${number} ORDER BY "orderId"`;
    expect(refunds).toEqual([
      { orderId: "r-a", amountRefund: 300 },
      { orderId: "r-b", amountRefund: 100 },
    ]);
    // A third merchant naming the number: no order of its own.
    await insertNotification(prisma, "r-ref-c", "REFUND.SUCCESS");
    const c = { mchid: SP_MCHID, subMchid: SUB_A };
    expect(await applyRefundStatement(prisma, refund("r-ref-c", number, c, "4200-r-a"))).toMatchObject({
      outcome: "ORDER_NOT_FOUND",
      orderId: null,
    });
    expect(await notificationOf("r-ref-c")).toMatchObject({ status: "PROCESSING", errorCode: null });
  });

  it("a refund naming another sub-merchant (or none) than the one whose order holds its transaction is SUB_MCHID_MISMATCH: nothing written", async () => {
    const number = `${NUMBER}-s`;
    const a = { mchid: SP_MCHID, subMchid: SUB_A };
    await seedOrder("s-a", number, a, "4200-s-a");
    await seedOrder("s-b", number, { mchid: SP_MCHID, subMchid: SUB_B }, "4200-s-b");
    await seedOrder("s-sp", number, { mchid: SP_MCHID, subMchid: null }, "4200-s-sp");
    // A's transaction under B's sub_mch_id, or with the sub_mch_id left out (the service provider's own order).
    for (const [nid, claimed] of [
      ["s-ref-b", SUB_B],
      ["s-ref-none", null],
    ] as const) {
      await insertNotification(prisma, nid, "REFUND.SUCCESS");
      for (const status of ["SUCCESS", "CLOSED"] as const) {
        const facts = refund(nid, number, { mchid: SP_MCHID, subMchid: claimed }, "4200-s-a", { status });
        expect(await applyRefundStatement(prisma, facts), `${nid} ${status}`).toMatchObject({
          outcome: "SUB_MCHID_MISMATCH",
          appliedAt: null,
        });
      }
      expect(await notificationOf(nid), nid).toMatchObject({ status: "PROCESSING", errorCode: null });
    }
    // Not even A's number needs to exist under the claimed sub-merchant: refused, not waited for (ORDER_NOT_FOUND).
    await insertNotification(prisma, "s-ref-x", "REFUND.SUCCESS");
    const elsewhere = refund("s-ref-x", `${number}-none`, { mchid: SP_MCHID, subMchid: SUB_B }, "4200-s-a");
    expect(await applyRefundStatement(prisma, elsewhere)).toMatchObject({ outcome: "SUB_MCHID_MISMATCH" });
    const refunds = await prisma.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM "Refund" WHERE "outTradeNo" LIKE ${`${number}%`}`;
    expect(refunds[0]?.n).toBe(0);
    for (const id of ["s-a", "s-b", "s-sp"]) {
      expect(await orderOf(id), id).toMatchObject({ status: "SUCCESS", refundedTotal: 0, reviewReason: null });
    }
    // A's own refund applies.
    await insertNotification(prisma, "s-ref-a", "REFUND.SUCCESS");
    expect(await applyRefundStatement(prisma, refund("s-ref-a", number, a, "4200-s-a"))).toMatchObject({
      outcome: "APPLIED",
      orderId: "s-a",
    });
  });

  it("a closed or abnormal refund of an order whose payment is not applied is ORDER_NOT_PAID, nothing written; once it is, the transaction decides", async () => {
    const number = `${NUMBER}-c`;
    const a = { mchid: SP_MCHID, subMchid: SUB_A };
    const b = { mchid: SP_MCHID, subMchid: SUB_B };
    await seedOrder("c-a", number, a);
    await seedOrder("c-b", number, b);
    // A's refund under its own sub-merchant, and a copy of it under B's (APIv2's outer sub_mch_id is not signed).
    const cases = [
      ["c-ref-a", a],
      ["c-ref-b", b],
    ] as const;
    for (const [nid, owner] of cases) {
      await insertNotification(prisma, nid, "REFUND.CLOSED");
      for (const status of ["CLOSED", "ABNORMAL"] as const) {
        const facts = refund(nid, number, owner, "4200-c-a", { status, successAt: null });
        // Before: REFUND_CLOSED / REFUND_ABNORMAL, recorded on the unpaid order (B's, for the copy).
        expect(await applyRefundStatement(prisma, facts), `${nid} ${status}`).toMatchObject({
          outcome: "ORDER_NOT_PAID",
          appliedAt: null,
        });
      }
      expect(await notificationOf(nid), nid).toMatchObject({ status: "PROCESSING", errorCode: null });
    }
    const written = await prisma.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM "Refund" WHERE "outTradeNo" = ${number}`;
    expect(written[0]?.n).toBe(0);

    // A's payment lands: the copy is another sub-merchant's transaction, A's own is recorded on A's order.
    await insertNotification(prisma, "c-pay-a");
    expect(
      await applyPaymentStatement(prisma, pay("c-pay-a", number, { ...a, transactionId: "4200-c-a" })),
    ).toMatchObject({ outcome: "APPLIED", orderId: "c-a" });
    const closed = (nid: string, owner: Owner) => refund(nid, number, owner, "4200-c-a", { status: "CLOSED" });
    expect(await applyRefundStatement(prisma, closed("c-ref-b", b))).toMatchObject({ outcome: "SUB_MCHID_MISMATCH" });
    expect(await applyRefundStatement(prisma, closed("c-ref-a", a))).toMatchObject({
      outcome: "REFUND_CLOSED",
      orderId: "c-a",
    });
    const refunds = await prisma.$queryRaw<{ orderId: string; status: string }[]>`
      SELECT "orderId", status::text FROM "Refund" WHERE "outTradeNo" = ${number}`;
    expect(refunds).toEqual([{ orderId: "c-a", status: "CLOSED" }]);
    expect(await orderOf("c-b")).toMatchObject({ status: "NOTPAY", transactionId: null, refundedTotal: 0 });
  });

  it("refuses a second order of one merchant (or sub-merchant) under one number, a null sub-merchant included", async () => {
    const number = `${NUMBER}-k`;
    await seedOrder("k-direct", number, { mchid: MCHID, subMchid: null });
    await seedOrder("k-sub", number, { mchid: MCHID, subMchid: SUB_A });
    await expect(seedOrder("k-direct-2", number, { mchid: MCHID, subMchid: null })).rejects.toThrow(
      /Order_outTradeNo_mchid_subMchid_key/,
    );
    await expect(seedOrder("k-sub-2", number, { mchid: MCHID, subMchid: SUB_A })).rejects.toThrow(
      /Order_outTradeNo_mchid_subMchid_key/,
    );
  });
});
