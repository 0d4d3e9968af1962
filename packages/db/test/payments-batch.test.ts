import {
  applyPaymentStatement,
  applyPaymentStatements,
  type PaymentFacts,
  type PaymentResult,
  type PrismaClient,
} from "@wpn/db";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APPID, MCHID, insertNotification as notification, paymentFacts as pay } from "./support/payments.ts";

// Two schemas with the same seed: one gets the batch, the other the same payments one statement at a time.
let batchDb: TestDatabase;
let singleDb: TestDatabase;
beforeAll(async () => {
  [batchDb, singleDb] = await Promise.all([createTestDatabase("dbpaybatch"), createTestDatabase("dbpaysingle")]);
});
afterAll(async () => {
  await Promise.all([batchDb?.drop(), singleDb?.drop()]);
});

/** Orders `<label>-<i>` (total 300 fen, items: 1 × sku-a<i % skus>, 2 × sku-b<i % skus>) and their notifications. */
async function seed(prisma: PrismaClient, label: string, orders: number, skus: number, stock: number): Promise<void> {
  await prisma.$executeRawUnsafe(
    `INSERT INTO "Sku" (id, name, stock) SELECT '${label}-sku-' || s || '-' || g, 'sku', ${stock}
     FROM generate_series(0, ${skus - 1}) g, unnest(ARRAY['a', 'b']) s`,
  );
  await prisma.$executeRawUnsafe(
    `INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal")
     SELECT '${label}-o-' || g, '${label}-' || g, '${MCHID}', '${APPID}', 300 FROM generate_series(0, ${orders - 1}) g`,
  );
  await prisma.$executeRawUnsafe(
    `INSERT INTO "OrderItem" ("orderId", "skuId", quantity)
     SELECT '${label}-o-' || g, '${label}-sku-a-' || (g % ${skus}), 1 FROM generate_series(0, ${orders - 1}) g
     UNION ALL
     SELECT '${label}-o-' || g, '${label}-sku-b-' || (g % ${skus}), 2 FROM generate_series(0, ${orders - 1}) g`,
  );
}

/** Everything the payments may have changed, without generated ids and clocks. */
async function state(prisma: PrismaClient, label: string) {
  const like = `${label}-%`;
  return {
    orders:
      await prisma.$queryRaw`SELECT "outTradeNo", status::text, "reviewReason", "transactionId", "paidAt", "payerOpenid"
      FROM "Order" WHERE "outTradeNo" LIKE ${like} ORDER BY "outTradeNo"`,
    skus: await prisma.$queryRaw`SELECT id, stock FROM "Sku" WHERE id LIKE ${like} ORDER BY id`,
    movements: await prisma.$queryRaw`SELECT "skuId", "orderId", delta, reason FROM "InventoryMovement"
      WHERE "orderId" LIKE ${like} ORDER BY "orderId", "skuId"`,
    notifications: await prisma.$queryRaw`SELECT id, status::text, "errorCode", attempts, "outTradeNo", "transactionId"
      FROM "Notification" WHERE id LIKE ${like} ORDER BY id`,
    events: await prisma.$queryRaw`SELECT "notificationId", kind, detail - 'orderId' AS detail FROM "NotificationEvent"
      WHERE "notificationId" LIKE ${like} ORDER BY "notificationId", id`,
  };
}

describe("applyPaymentStatements (real PostgreSQL)", () => {
  it("gives the results and end state of the same payments applied one at a time, in order", async () => {
    const label = "mix";
    // 4 orders; the SKUs of orders 0 and 2 are shared (2 SKU pairs) and hold stock for one order's items only.
    for (const db of [batchDb, singleDb]) {
      await seed(db.db.prisma, label, 4, 2, 2);
      for (const nid of ["n0", "n0b", "n1", "n2", "n3", "n-close"]) await notification(db.db.prisma, `${label}-${nid}`);
      await db.db.prisma.$executeRaw`UPDATE "Order" SET status = 'CLOSED' WHERE "outTradeNo" = ${`${label}-3`}`;
    }
    const batch = [
      pay(`${label}-n0`, `${label}-0`), // APPLIED, takes the shared stock
      pay(`${label}-n0`, `${label}-0`), // the same notification again: ALREADY
      pay(`${label}-n0b`, `${label}-0`), // another notification of the same transaction: DUPLICATE
      pay(`${label}-n1`, `${label}-1`, { total: 299 }), // AMOUNT_MISMATCH
      pay(`${label}-n2`, `${label}-2`), // same SKUs as order 0, whose stock is gone: OUT_OF_STOCK
      pay(`${label}-n-close`, `${label}-3`), // PAID_AFTER_CLOSE
      pay(`${label}-n3`, `${label}-unknown`), // ORDER_NOT_FOUND
      pay(`${label}-missing`, `${label}-1`), // NOTIFICATION_NOT_FOUND
    ];
    const batched = await applyPaymentStatements(batchDb.db.prisma, batch);
    const singles: PaymentResult[] = [];
    for (const facts of batch) singles.push(await applyPaymentStatement(singleDb.db.prisma, facts));

    expect(batched.map((r) => r.outcome)).toEqual([
      "APPLIED",
      "ALREADY",
      "DUPLICATE",
      "AMOUNT_MISMATCH",
      "OUT_OF_STOCK",
      "PAID_AFTER_CLOSE",
      "ORDER_NOT_FOUND",
      "NOTIFICATION_NOT_FOUND",
    ]);
    const comparable = (rows: PaymentResult[]) => rows.map(({ orderId: _id, appliedAt: _clock, ...rest }) => rest);
    expect(comparable(batched)).toEqual(comparable(singles));
    expect(await state(batchDb.db.prisma, label)).toEqual(await state(singleDb.db.prisma, label));
    // appliedAt: the commit time the notification records, also for the ALREADY of a notification committed earlier
    // in the same batch; null when nothing was committed.
    for (const [db, results] of [
      [batchDb, batched],
      [singleDb, singles],
    ] as const) {
      const applied = new Map(
        (await db.db.prisma.notification.findMany({ where: { id: { startsWith: `${label}-` } } })).map((n) => [
          n.id,
          n.appliedAt?.getTime() ?? null,
        ]),
      );
      expect(results.map((r) => r.appliedAt)).toEqual(
        batch.map((p, i) => (i >= 6 ? null : (applied.get(p.notificationId) ?? "missing"))),
      );
      expect(results[0]?.appliedAt).toEqual(expect.any(Number));
    }
  });

  it("a later report of an applied transaction with other facts is DUPLICATE_MISMATCH, in a batch as one at a time", async () => {
    const label = "dupfacts";
    const nids = ["n0", "same", "amount", "currency", "appid", "payer", "payer-null"];
    for (const db of [batchDb, singleDb]) {
      await seed(db.db.prisma, label, 1, 1, 5);
      for (const nid of nids) await notification(db.db.prisma, `${label}-${nid}`);
    }
    const order = `${label}-0`;
    const batch = [
      pay(`${label}-n0`, order),
      pay(`${label}-same`, order),
      pay(`${label}-amount`, order, { total: 299 }),
      pay(`${label}-currency`, order, { currency: "USD" }),
      pay(`${label}-appid`, order, { appid: "wxother0000000001" }),
      pay(`${label}-payer`, order, { payerOpenid: "oAnotherPayer" }),
      // A report without the payer names nothing to compare.
      pay(`${label}-payer-null`, order, { payerOpenid: null }),
    ];
    const batched = await applyPaymentStatements(batchDb.db.prisma, batch);
    const singles: PaymentResult[] = [];
    for (const facts of batch) singles.push(await applyPaymentStatement(singleDb.db.prisma, facts));
    expect(batched.map((r) => r.outcome)).toEqual([
      "APPLIED",
      "DUPLICATE",
      "DUPLICATE_MISMATCH",
      "DUPLICATE_MISMATCH",
      "DUPLICATE_MISMATCH",
      "DUPLICATE_MISMATCH",
      "DUPLICATE",
    ]);
    const comparable = (rows: PaymentResult[]) => rows.map(({ orderId: _id, appliedAt: _clock, ...rest }) => rest);
    expect(comparable(batched)).toEqual(comparable(singles));
    const end = await state(batchDb.db.prisma, label);
    expect(end).toEqual(await state(singleDb.db.prisma, label));
    // The order and stock as the first payment left them; each mismatch is a REVIEW of its notification only.
    expect(end.orders).toEqual([expect.objectContaining({ status: "SUCCESS", reviewReason: null })]);
    expect(end.skus).toEqual([
      { id: `${label}-sku-a-0`, stock: 4 },
      { id: `${label}-sku-b-0`, stock: 3 },
    ]);
    expect(
      (end.notifications as { id: string; status: string; errorCode: string | null }[]).map((n) => [
        n.id.slice(label.length + 1),
        n.status,
        n.errorCode,
      ]),
    ).toEqual([
      ["amount", "REVIEW", "DUPLICATE_MISMATCH"],
      ["appid", "REVIEW", "DUPLICATE_MISMATCH"],
      ["currency", "REVIEW", "DUPLICATE_MISMATCH"],
      ["n0", "APPLIED", null],
      ["payer", "REVIEW", "DUPLICATE_MISMATCH"],
      ["payer-null", "DUPLICATE", null],
      ["same", "DUPLICATE", null],
    ]);
  });

  it("a second charge reported twice (two notification ids) is DUPLICATE_PAYMENT once, then DUPLICATE, in a batch as one at a time", async () => {
    const label = "twice";
    const nids = ["paid", "charge", "charge-again", "third"];
    for (const db of [batchDb, singleDb]) {
      await seed(db.db.prisma, label, 1, 1, 5);
      for (const nid of nids) await notification(db.db.prisma, `${label}-${nid}`);
      // As the parse stage records them: the merchant whose keys opened each notification.
      await db.db.prisma.$executeRaw`UPDATE "Notification" SET mchid = ${MCHID} WHERE id LIKE ${`${label}-%`}`;
    }
    const order = `${label}-0`;
    const batch = [
      pay(`${label}-paid`, order),
      pay(`${label}-charge`, order, { transactionId: "4200-second" }),
      pay(`${label}-charge-again`, order, { transactionId: "4200-second" }),
      pay(`${label}-third`, order, { transactionId: "4200-third" }),
    ];
    const batched = await applyPaymentStatements(batchDb.db.prisma, batch);
    const singles: PaymentResult[] = [];
    for (const facts of batch) singles.push(await applyPaymentStatement(singleDb.db.prisma, facts));
    // Before: DUPLICATE_PAYMENT for charge-again too — a second REVIEW (and payment.review) for the same charge.
    expect(batched.map((r) => r.outcome)).toEqual(["APPLIED", "DUPLICATE_PAYMENT", "DUPLICATE", "DUPLICATE_PAYMENT"]);
    const comparable = (rows: PaymentResult[]) => rows.map(({ orderId: _id, appliedAt: _clock, ...rest }) => rest);
    expect(comparable(batched)).toEqual(comparable(singles));
    const end = await state(batchDb.db.prisma, label);
    expect(end).toEqual(await state(singleDb.db.prisma, label));
    expect(end.orders).toEqual([
      expect.objectContaining({ status: "PAYMENT_REVIEW", reviewReason: "DUPLICATE_PAYMENT" }),
    ]);
  });

  it("answers an empty batch without a round trip", async () => {
    expect(await applyPaymentStatements(batchDb.db.prisma, [])).toEqual([]);
  });

  it("runs concurrent batches over shared SKUs in any order without deadlock, stock exact", async () => {
    const label = "conc";
    const orders = 240;
    const prisma = batchDb.db.prisma;
    await seed(prisma, label, orders, 6, 1_000);
    for (let i = 0; i < orders; i++) await notification(prisma, `${label}-n${i}`);
    // 24 batches of 10 shuffled payments (every SKU pair appears in every batch, in a different order), all at once.
    const all = Array.from({ length: orders }, (_, i) => pay(`${label}-n${i}`, `${label}-${i}`));
    for (let i = all.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1);
      [all[i], all[j]] = [all[j] as PaymentFacts, all[i] as PaymentFacts];
    }
    const batches = Array.from({ length: 24 }, (_, b) => all.slice(b * 10, b * 10 + 10));
    const results = (await Promise.all(batches.map((batch) => applyPaymentStatements(prisma, batch)))).flat();
    expect(results.every((r) => r.outcome === "APPLIED")).toBe(true);
    const skus = await prisma.$queryRaw<{ id: string; stock: number }[]>`
      SELECT id, stock FROM "Sku" WHERE id LIKE ${`${label}-%`} ORDER BY id`;
    // 240 orders over 6 SKU pairs: 40 orders per pair, 1 × a and 2 × b each.
    expect(skus.map((s) => s.stock)).toEqual([...Array(6).fill(960), ...Array(6).fill(920)]);
    const [moves] = await prisma.$queryRaw<{ n: bigint }[]>`
      SELECT count(*) AS n FROM "InventoryMovement" WHERE "orderId" LIKE ${`${label}-%`}`;
    expect(Number(moves?.n)).toBe(orders * 2);
  });
});
