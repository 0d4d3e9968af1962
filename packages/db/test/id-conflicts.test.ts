import {
  applyPaymentStatement,
  applyPaymentStatements,
  applyRefundStatement,
  classifyDbError,
  type PrismaClient,
  paymentStatement,
  type RefundFacts,
} from "@wpn/db";
import { createTestDatabase, type TestDatabase, whileRowChanges } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APPID, insertNotification, MCHID, paymentFacts as pay } from "./support/payments.ts";

/**
 * Order."transactionId" and Refund."refundId" are unique across the deployment, while what names them comes in a
 * notification signed or encrypted with the tenant's own key: a tenant can send a payment of its own order carrying
 * another tenant's transaction id (or a refund with another's refund id), and a bug upstream can hand two orders one
 * id. The second one to arrive is recorded for review (TRANSACTION_CONFLICT, REFUND_ID_CONFLICT) instead of failing
 * the statement on the unique index (23505, dead-lettered as DB_CONSTRAINT, every replay failing alike).
 */

const OTHER_MCHID = "1900000777";

let tdb: TestDatabase;
let prisma: PrismaClient;
beforeAll(async () => {
  tdb = await createTestDatabase("dbidconflict");
  prisma = tdb.db.prisma;
});
afterAll(async () => {
  await tdb?.drop();
});

async function seedOrder(label: string, mchid = MCHID, paidBy: string | null = null): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal", status, "transactionId")
    VALUES (${`${label}-o`}, ${label}, ${mchid}, ${APPID}, 300,
            ${paidBy === null ? "NOTPAY" : "SUCCESS"}::"OrderStatus", ${paidBy})`;
}

async function orderOf(label: string) {
  const [row] = await prisma.$queryRaw<{ status: string; transactionId: string | null; reviewReason: string | null }[]>`
    SELECT status::text, "transactionId", "reviewReason" FROM "Order" WHERE "outTradeNo" = ${label}`;
  return row;
}

async function notificationOf(id: string) {
  const [row] = await prisma.$queryRaw<
    { status: string; errorCode: string | null; transactionId: string | null; outRefundNo: string | null }[]
  >`SELECT status::text, "errorCode", "transactionId", "outRefundNo" FROM "Notification" WHERE id = ${id}`;
  return row;
}

/** Runs `fn` and returns what it threw (fails the test when it does not throw). */
async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}

/** A successful refund of 100 fen of `label`'s order (paid by `4200-<label>`). */
function refund(nid: string, label: string, outRefundNo: string, refundId: string): RefundFacts {
  return {
    notificationId: nid,
    outTradeNo: label,
    outRefundNo,
    refundId,
    transactionId: `4200-${label}`,
    mchid: MCHID,
    subMchid: null,
    status: "SUCCESS",
    amountRefund: 100,
    amountTotal: 300,
    successAt: Date.UTC(2026, 11, 1, 3, 0, 0),
    restockOnFullRefund: false,
  };
}

describe("payments: a transaction id already on another order (real PostgreSQL)", () => {
  it("another tenant's payment of its own order took it first: TRANSACTION_CONFLICT, this order left alone", async () => {
    await seedOrder("t1-forger", OTHER_MCHID);
    await seedOrder("t1-victim");
    await insertNotification(prisma, "t1-forged");
    await insertNotification(prisma, "t1-genuine");
    const forged = pay("t1-forged", "t1-forger", { mchid: OTHER_MCHID, transactionId: "4200-t1-victim" });
    expect((await applyPaymentStatement(prisma, forged)).outcome).toBe("APPLIED");

    // Before: 23505 on Order_transactionId_key, DB_CONSTRAINT (dead letter), order NOTPAY for every replay.
    const genuine = await applyPaymentStatement(prisma, pay("t1-genuine", "t1-victim"));
    expect(genuine).toMatchObject({ outcome: "TRANSACTION_CONFLICT", orderId: "t1-victim-o", orderStatus: "NOTPAY" });
    expect(await orderOf("t1-victim")).toEqual({ status: "NOTPAY", transactionId: null, reviewReason: null });
    expect(await notificationOf("t1-genuine")).toMatchObject({
      status: "REVIEW",
      errorCode: "TRANSACTION_CONFLICT",
      transactionId: "4200-t1-victim",
    });
    const again = await applyPaymentStatement(prisma, pay("t1-genuine", "t1-victim"));
    expect(again).toMatchObject({
      outcome: "ALREADY",
      notificationStatus: "REVIEW",
      notificationCode: "TRANSACTION_CONFLICT",
    });
  });

  it("checked before the order's state: a paid order meeting another order's transaction is not DUPLICATE_PAYMENT", async () => {
    await seedOrder("t2-a", MCHID, "4200-t2-shared");
    await seedOrder("t2-b", MCHID, "4200-t2-own");
    await insertNotification(prisma, "t2-n");
    const result = await applyPaymentStatement(prisma, pay("t2-n", "t2-b", { transactionId: "4200-t2-shared" }));
    expect(result.outcome).toBe("TRANSACTION_CONFLICT");
    expect(await orderOf("t2-b")).toEqual({ status: "SUCCESS", transactionId: "4200-t2-own", reviewReason: null });
  });

  it("in one batch: the later payment carrying the earlier one's transaction id is TRANSACTION_CONFLICT", async () => {
    for (const label of ["t3-a", "t3-b", "t3-c"]) {
      await seedOrder(label);
      await insertNotification(prisma, `${label}-n`);
    }
    const results = await applyPaymentStatements(prisma, [
      pay("t3-a-n", "t3-a", { transactionId: "4200-t3-shared" }),
      pay("t3-b-n", "t3-b", { transactionId: "4200-t3-shared" }),
      pay("t3-c-n", "t3-c"),
    ]);
    expect(results.map((r) => r.outcome)).toEqual(["APPLIED", "TRANSACTION_CONFLICT", "APPLIED"]);
    expect(await orderOf("t3-b")).toMatchObject({ status: "NOTPAY", transactionId: null });
  });

  it("the other payment commits while this statement runs: a retried DB_CONFLICT, and the retry answers TRANSACTION_CONFLICT", async () => {
    await seedOrder("t4-a");
    await seedOrder("t4-b");
    await insertNotification(prisma, "t4-a-n");
    await insertNotification(prisma, "t4-b-n");
    const first = JSON.stringify([
      {
        nid: "t4-a-n",
        otn: "t4-a",
        txn: "4200-t4-shared",
        mchid: MCHID,
        appid: APPID,
        sub_mchid: null,
        sub_appid: null,
        total: 300,
        currency: "CNY",
        openid: null,
        paid_at: 0,
      },
    ]);
    // The first payment's transaction holds the id uncommitted: this statement's snapshot cannot see it, the unique
    // index makes it wait, and the first one commits only then.
    const error = await thrown(() =>
      whileRowChanges(tdb, "SELECT * FROM wpn_apply_payments($1::json)", [first], () =>
        applyPaymentStatement(prisma, pay("t4-b-n", "t4-b", { transactionId: "4200-t4-shared" })),
      ),
    );
    // Before: { transient: false, code: "DB_CONSTRAINT" } — dead-lettered although a retry decides it.
    expect(classifyDbError(error)).toEqual({ transient: true, code: "DB_CONFLICT", sqlstate: "23505" });
    expect(await notificationOf("t4-b-n")).toMatchObject({ status: "PROCESSING" });
    const retried = await applyPaymentStatement(prisma, pay("t4-b-n", "t4-b", { transactionId: "4200-t4-shared" }));
    expect(retried.outcome).toBe("TRANSACTION_CONFLICT");
    expect(await orderOf("t4-a")).toMatchObject({ status: "SUCCESS", transactionId: "4200-t4-shared" });
    expect(await orderOf("t4-b")).toMatchObject({ status: "NOTPAY", transactionId: null });
  });

  it("other unique violations stay permanent DB_CONSTRAINT", async () => {
    await seedOrder("t5");
    const error = await thrown(() => seedOrder("t5"));
    expect(classifyDbError(error)).toEqual({ transient: false, code: "DB_CONSTRAINT", sqlstate: "23505" });
  });
});

describe("payments: a transaction id already another order's second charge (real PostgreSQL)", () => {
  /** `label`'s order paid by `4200-<label>`, with `charge` applied to it as a second charge (DUPLICATE_PAYMENT). */
  async function chargedTwice(label: string, charge: string): Promise<void> {
    await seedOrder(label, MCHID, `4200-${label}`);
    await insertNotification(prisma, `${label}-charge`);
    // The merchant the parse stage records: the payment statement finds an order's second charges by it.
    await prisma.$executeRaw`UPDATE "Notification" SET mchid = ${MCHID} WHERE id = ${`${label}-charge`}`;
    const result = await applyPaymentStatement(prisma, pay(`${label}-charge`, label, { transactionId: charge }));
    expect(result.outcome).toBe("DUPLICATE_PAYMENT");
  }

  it("in one batch: a second charge of A, then B's payment of that transaction, is TRANSACTION_CONFLICT", async () => {
    await seedOrder("c1-a", MCHID, "4200-c1-a");
    await seedOrder("c1-b");
    await insertNotification(prisma, "c1-a-n");
    await insertNotification(prisma, "c1-b-n");
    const results = await applyPaymentStatements(prisma, [
      pay("c1-a-n", "c1-a", { transactionId: "4200-c1-shared" }),
      pay("c1-b-n", "c1-b", { transactionId: "4200-c1-shared" }),
    ]);
    // Before: ["DUPLICATE_PAYMENT", "APPLIED"].
    expect(results.map((r) => r.outcome)).toEqual(["DUPLICATE_PAYMENT", "TRANSACTION_CONFLICT"]);
    expect(await orderOf("c1-b")).toEqual({ status: "NOTPAY", transactionId: null, reviewReason: null });
  });

  it("B's payment commits while A's second charge of the transaction runs: a retried DB_CONFLICT, then TRANSACTION_CONFLICT", async () => {
    await seedOrder("c2-a", MCHID, "4200-c2-a");
    await seedOrder("c2-b");
    await insertNotification(prisma, "c2-a-n");
    await insertNotification(prisma, "c2-b-n");
    const ofB = paymentStatement([pay("c2-b-n", "c2-b", { transactionId: "4200-c2-shared" })]);
    const error = await thrown(() =>
      whileRowChanges(tdb, ofB.text, ofB.values, () =>
        applyPaymentStatement(prisma, pay("c2-a-n", "c2-a", { transactionId: "4200-c2-shared" })),
      ),
    );
    expect(classifyDbError(error)).toEqual({ transient: true, code: "DB_CONFLICT", sqlstate: "23505" });
    const retried = await applyPaymentStatement(prisma, pay("c2-a-n", "c2-a", { transactionId: "4200-c2-shared" }));
    expect(retried.outcome).toBe("TRANSACTION_CONFLICT");
    expect(await orderOf("c2-a")).toEqual({ status: "SUCCESS", transactionId: "4200-c2-a", reviewReason: null });
    expect(await orderOf("c2-b")).toMatchObject({ status: "SUCCESS", transactionId: "4200-c2-shared" });
  });

  it("an order written by hand with another order's second charge fails the key; a transaction id corrected by hand frees the old one", async () => {
    await chargedTwice("c3-a", "4200-c3-charge");
    const error = await thrown(() => seedOrder("c3-b", MCHID, "4200-c3-charge"));
    expect(classifyDbError(error)).toMatchObject({ sqlstate: "23505" });
    // A paid order's transaction id corrected by hand: the old one is no longer taken, the new one is.
    await seedOrder("c3-c", MCHID, "4200-c3-typo");
    await prisma.$executeRaw`UPDATE "Order" SET "transactionId" = '4200-c3-fixed' WHERE "outTradeNo" = 'c3-c'`;
    await seedOrder("c3-d");
    await insertNotification(prisma, "c3-d-n");
    const typo = await applyPaymentStatement(prisma, pay("c3-d-n", "c3-d", { transactionId: "4200-c3-typo" }));
    expect(typo.outcome).toBe("APPLIED");
    await seedOrder("c3-e");
    await insertNotification(prisma, "c3-e-n");
    const fixed = await applyPaymentStatement(prisma, pay("c3-e-n", "c3-e", { transactionId: "4200-c3-fixed" }));
    expect(fixed.outcome).toBe("TRANSACTION_CONFLICT");
  });

  it("the order's own later reports of its second charge stay DUPLICATE", async () => {
    await chargedTwice("c4-a", "4200-c4-charge");
    await insertNotification(prisma, "c4-a-again");
    const again = await applyPaymentStatement(prisma, pay("c4-a-again", "c4-a", { transactionId: "4200-c4-charge" }));
    expect(again.outcome).toBe("DUPLICATE");
  });
});

describe("refunds: a refund id already on another refund (real PostgreSQL)", () => {
  it("another order's refund, or this order's under another number, holds it: REFUND_ID_CONFLICT, nothing recorded", async () => {
    await seedOrder("r1-a", MCHID, "4200-r1-a");
    await seedOrder("r1-b", MCHID, "4200-r1-b");
    for (const id of ["r1-a-n", "r1-b-n", "r1-b-n2"]) await insertNotification(prisma, id, "REFUND.SUCCESS");
    expect((await applyRefundStatement(prisma, refund("r1-a-n", "r1-a", "RF-1", "5000-r1"))).outcome).toBe("APPLIED");

    // Before: 23505 on Refund_refundId_key, DB_CONSTRAINT (dead letter).
    const otherOrder = await applyRefundStatement(prisma, refund("r1-b-n", "r1-b", "RF-1", "5000-r1"));
    expect(otherOrder).toMatchObject({ outcome: "REFUND_ID_CONFLICT", orderStatus: "SUCCESS", refundedTotal: null });
    const otherNumber = await applyRefundStatement(prisma, refund("r1-b-n2", "r1-a", "RF-2", "5000-r1"));
    expect(otherNumber.outcome).toBe("REFUND_ID_CONFLICT");
    for (const id of ["r1-b-n", "r1-b-n2"]) {
      expect(await notificationOf(id)).toMatchObject({ status: "REVIEW", errorCode: "REFUND_ID_CONFLICT" });
    }
    const refunds = await prisma.$queryRaw<{ outTradeNo: string; outRefundNo: string }[]>`
      SELECT "outTradeNo", "outRefundNo" FROM "Refund" WHERE "outTradeNo" IN ('r1-a', 'r1-b') ORDER BY 1, 2`;
    expect(refunds).toEqual([{ outTradeNo: "r1-a", outRefundNo: "RF-1" }]);
    const [b] = await prisma.$queryRaw<{ refundedTotal: number }[]>`
      SELECT "refundedTotal" FROM "Order" WHERE "outTradeNo" = 'r1-b'`;
    expect(b?.refundedTotal).toBe(0);
  });

  it("the other refund commits while this statement runs: a retried DB_CONFLICT, and the retry answers REFUND_ID_CONFLICT", async () => {
    await seedOrder("r2-a", MCHID, "4200-r2-a");
    await seedOrder("r2-b", MCHID, "4200-r2-b");
    await insertNotification(prisma, "r2-b-n", "REFUND.SUCCESS");
    const insertOther = `INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", status, "amountRefund", "amountTotal", "updatedAt")
      VALUES ('RF-a', '5000-r2', 'r2-a', 'ABNORMAL', 100, 300, now())`;
    const error = await thrown(() =>
      whileRowChanges(tdb, insertOther, [], () =>
        applyRefundStatement(prisma, refund("r2-b-n", "r2-b", "RF-b", "5000-r2")),
      ),
    );
    expect(classifyDbError(error)).toEqual({ transient: true, code: "DB_CONFLICT", sqlstate: "23505" });
    const retried = await applyRefundStatement(prisma, refund("r2-b-n", "r2-b", "RF-b", "5000-r2"));
    expect(retried.outcome).toBe("REFUND_ID_CONFLICT");
  });
});
