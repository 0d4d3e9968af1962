import { applyPaymentStatement, type PaymentFacts, type PaymentResult, type PrismaClient } from "@wpn/db";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baselinePayment } from "../bench/worker-baseline.ts";
import { APPID, MCHID, paymentFacts as pay } from "../packages/db/test/support/payments.ts";

// The worker benchmark compares the shipped payment statement (wpn_apply_payments) with bench/worker-baseline.ts, a
// raw-pg transaction per payment; the comparison means something only while both do the same work. Two schemas with
// the same seed: one gets the payments through the statement, the other through the baseline, one at a time, in order.
let shippedDb: TestDatabase;
let baselineDb: TestDatabase;
beforeAll(async () => {
  [shippedDb, baselineDb] = await Promise.all([
    createTestDatabase("benchshipped"),
    createTestDatabase("benchbaseline"),
  ]);
});
afterAll(async () => {
  await Promise.all([shippedDb?.drop(), baselineDb?.drop()]);
});

const SUB_MCHID = "1900000110";
const INT4_MAX = 2_147_483_647;

/**
 * Orders `o-<number>` (300 fen; items 1 × sku-a, 2 × sku-b unless said), their SKUs and notifications, every row last
 * written a day ago (so that a write by the payment shows in updatedAt). `legacy` and `settled` were paid before the
 * order recorded its payment's facts (paid* null), their payment in REVIEW as AMOUNT_MISMATCH; `settled`'s review was
 * cleared by hand since.
 */
async function seed(prisma: PrismaClient): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Sku" (id, name, stock, "updatedAt") VALUES
    ('sku-a', 'a', 100, now() - interval '1 day'), ('sku-b', 'b', 100, now() - interval '1 day'),
    ('sku-low', 'low', 1, now() - interval '1 day'), ('sku-big', 'big', 100, now() - interval '1 day')`;
  await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, "subMchid", appid, "amountTotal", status,
      "reviewReason", "transactionId", "paidAt", "payerOpenid", "updatedAt")
    SELECT 'o-' || n, n, ${MCHID}, CASE WHEN n = 'partner' THEN ${SUB_MCHID} END, ${APPID}, 300,
           (CASE n WHEN 'closed' THEN 'CLOSED' WHEN 'refunded' THEN 'REFUND' WHEN 'legacy' THEN 'PAYMENT_REVIEW'
                   WHEN 'settled' THEN 'SUCCESS' ELSE 'NOTPAY' END)::"OrderStatus",
           CASE WHEN n = 'legacy' THEN 'AMOUNT_MISMATCH' END,
           CASE WHEN n IN ('legacy', 'settled') THEN '4200-' || n END,
           CASE WHEN n IN ('legacy', 'settled') THEN timestamp '2026-11-29 03:00:00' END,
           CASE WHEN n IN ('legacy', 'settled') THEN 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o' END,
           now() - interval '1 day'
    FROM unnest(ARRAY['paid', 'amount', 'appid', 'currency', 'closed', 'refunded', 'low', 'huge', 'partner', 'legacy',
                      'settled']) n`;
  await prisma.$executeRaw`INSERT INTO "OrderItem" ("orderId", "skuId", quantity)
    SELECT o.id, s.sku, s.qty FROM "Order" o, (VALUES ('sku-a', 1), ('sku-b', 2)) s(sku, qty)
    WHERE o.id NOT IN ('o-low', 'o-huge')
    UNION ALL VALUES ('o-low', 'sku-low', 2), ('o-huge', 'sku-big', ${INT4_MAX}::int), ('o-huge', 'sku-big', ${INT4_MAX}::int)`;
  await prisma.$executeRaw`INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", body, status, "errorCode",
      "outTradeNo", "transactionId", "appliedAt")
    VALUES ('n-legacy-first', ${MCHID}, 'TRANSACTION.SUCCESS', now() - interval '2 days', '{}', 'REVIEW', 'AMOUNT_MISMATCH',
            'legacy', '4200-legacy', now() - interval '2 days'),
           ('n-settled-first', ${MCHID}, 'TRANSACTION.SUCCESS', now() - interval '2 days', '{}', 'REVIEW', 'AMOUNT_MISMATCH',
            'settled', '4200-settled', now() - interval '2 days')`;
  await prisma.$executeRaw`INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", body, status)
    SELECT id, ${MCHID}, 'TRANSACTION.SUCCESS', now() AT TIME ZONE 'UTC', '{}', 'PROCESSING'
    FROM unnest(${payments.map((p) => p.notificationId).filter((id) => id !== "n-missing")}::text[]) id
    ON CONFLICT (id) DO NOTHING`;
}

/** Every outcome the statement can answer one payment at a time (all but STALE), with the outcome it answers. */
const cases: [PaymentFacts, string][] = [
  [pay("n-paid", "paid"), "APPLIED"],
  [pay("n-paid", "paid"), "ALREADY"],
  [pay("n-paid-again", "paid"), "DUPLICATE"],
  [pay("n-paid-other-amount", "paid", { total: 299 }), "DUPLICATE_MISMATCH"],
  [pay("n-paid-other-payer", "paid", { payerOpenid: "oAnotherPayer" }), "DUPLICATE_MISMATCH"],
  [pay("n-second", "paid", { transactionId: "4200-second" }), "DUPLICATE_PAYMENT"],
  [pay("n-second-again", "paid", { transactionId: "4200-second" }), "DUPLICATE"],
  [pay("n-third", "paid", { transactionId: "4200-third" }), "DUPLICATE_PAYMENT"],
  [pay("n-conflict", "amount", { transactionId: "4200-paid" }), "TRANSACTION_CONFLICT"],
  // Another order's second charge (migration 20261211150000).
  [pay("n-conflict-charge", "currency", { transactionId: "4200-second" }), "TRANSACTION_CONFLICT"],
  [pay("n-amount", "amount", { total: 299 }), "AMOUNT_MISMATCH"],
  [pay("n-amount-again", "amount", { total: 299 }), "DUPLICATE"],
  [pay("n-amount-third", "amount", { total: 298 }), "DUPLICATE_MISMATCH"],
  [pay("n-appid", "appid", { appid: "wxother0000000001" }), "APPID_MISMATCH"],
  [pay("n-currency", "currency", { currency: "USD" }), "CURRENCY_MISMATCH"],
  [pay("n-closed", "closed"), "PAID_AFTER_CLOSE"],
  [pay("n-refunded", "refunded"), "UNEXPECTED_ORDER_STATUS"],
  [pay("n-low", "low"), "OUT_OF_STOCK"],
  [pay("n-huge", "huge"), "OUT_OF_STOCK"],
  [pay("n-partner", "partner", { subMchid: SUB_MCHID, total: 299, payerSpOpenid: "oSpPayer" }), "AMOUNT_MISMATCH"],
  [pay("n-partner-again", "partner", { subMchid: SUB_MCHID, total: 299, payerSpOpenid: "oSpPayer" }), "DUPLICATE"],
  [
    pay("n-partner-other-payer", "partner", { subMchid: SUB_MCHID, total: 299, payerSpOpenid: "oSpOther" }),
    "DUPLICATE_MISMATCH",
  ],
  [pay("n-legacy", "legacy", { total: 299 }), "DUPLICATE"],
  [pay("n-settled", "settled", { total: 299 }), "DUPLICATE"],
  [pay("n-unknown", "unknown"), "ORDER_NOT_FOUND"],
  [pay("n-missing", "paid"), "NOTIFICATION_NOT_FOUND"],
];
const payments = cases.map(([facts]) => facts);

/** Every row the payments may have changed, without generated ids and clocks (whether a row was written instead). */
async function state(prisma: PrismaClient) {
  return {
    orders: await prisma.$queryRaw`SELECT id, status::text, "reviewReason", "transactionId", "paidAt", "payerOpenid",
        "paidTotal", "paidCurrency", "paidAppid", "paidSubAppid", "paidSpOpenid",
        "updatedAt" > now() - interval '1 hour' AS written
      FROM "Order" ORDER BY id`,
    skus: await prisma.$queryRaw`SELECT id, stock, "updatedAt" > now() - interval '1 hour' AS written
      FROM "Sku" ORDER BY id`,
    movements: await prisma.$queryRaw`SELECT "skuId", "orderId", delta, reason FROM "InventoryMovement"
      ORDER BY "orderId", "skuId"`,
    notifications: await prisma.$queryRaw`SELECT id, status::text, "errorCode", "lastError", attempts, "outTradeNo",
        "transactionId", "appliedAt" IS NOT NULL AS applied
      FROM "Notification" ORDER BY id`,
    events: await prisma.$queryRaw`SELECT "notificationId", kind, detail FROM "NotificationEvent"
      ORDER BY "notificationId", id`,
    transactions: await prisma.$queryRaw`SELECT "transactionId", "orderId", "secondCharge", total
      FROM "PaymentTransaction"
      ORDER BY "transactionId"`,
  };
}

describe("the worker benchmark's raw-pg baseline (bench/worker-baseline.ts)", () => {
  it("answers and writes what wpn_apply_payments does, for every outcome", async () => {
    await Promise.all([seed(shippedDb.db.prisma), seed(baselineDb.db.prisma)]);
    const shipped: PaymentResult[] = [];
    const baseline: PaymentResult[] = [];
    for (const facts of payments) {
      shipped.push(await applyPaymentStatement(shippedDb.db.prisma, facts));
      baseline.push(await baselinePayment(baselineDb.db.pool, facts));
    }
    expect(shipped.map((r) => r.outcome)).toEqual(cases.map(([, outcome]) => outcome));
    // appliedAt is each side's clock: compared on whether there is one.
    const comparable = (rows: PaymentResult[]) => rows.map((r) => ({ ...r, appliedAt: r.appliedAt !== null }));
    expect(comparable(baseline)).toEqual(comparable(shipped));
    expect(await state(baselineDb.db.prisma)).toEqual(await state(shippedDb.db.prisma));
  });
});
