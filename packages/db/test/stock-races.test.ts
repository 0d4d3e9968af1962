import {
  applyPaymentStatement,
  applyPaymentStatements,
  applyRefundStatement,
  classifyDbError,
  type PrismaClient,
} from "@wpn/db";
import { createTestDatabase, type TestDatabase, whileRowChanges } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APPID, insertNotification, MCHID, paymentFacts as pay } from "./support/payments.ts";

/**
 * A stock change committed by another transaction while a payment or refund statement is running: the statement's
 * snapshot predates it, its row lock does not. The stock check and the stock update must both use the locked
 * (newest) row, or a movement is recorded without its stock change. Each test makes the interleaving certain: a
 * second connection holds the SKU row, the statement starts and waits on that row lock, then the holder commits.
 * Likewise for an order's items changed while a payment waits for the order row (the last describe).
 */

let tdb: TestDatabase;
let prisma: PrismaClient;
beforeAll(async () => {
  tdb = await createTestDatabase("dbstockrace");
  prisma = tdb.db.prisma;
});
afterAll(async () => {
  await tdb?.drop();
});

async function seedOrder(label: string, items: Record<string, number>): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal")
    VALUES (${`${label}-o`}, ${label}, ${MCHID}, ${APPID}, 300)`;
  for (const [sku, quantity] of Object.entries(items)) {
    await prisma.$executeRaw`INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES (${`${label}-o`}, ${sku}, ${quantity})`;
  }
}

async function seedSku(id: string, stock: number): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Sku" (id, name, stock) VALUES (${id}, 'sku', ${stock})`;
}

async function stockOf(id: string): Promise<number | undefined> {
  const rows = await prisma.$queryRaw<{ stock: number }[]>`SELECT stock FROM "Sku" WHERE id = ${id}`;
  return rows[0]?.stock;
}

async function movementsOf(orderId: string): Promise<{ skuId: string; delta: number; reason: string }[]> {
  return prisma.$queryRaw`SELECT "skuId", delta, reason::text FROM "InventoryMovement"
    WHERE "orderId" = ${orderId} ORDER BY reason, "skuId"`;
}

/**
 * Runs `statement` while another transaction holds the row of `skuId` after adding `stockDelta` to its stock,
 * and commits that transaction only once the statement is waiting for the row lock.
 */
function whileStockChanges<T>(skuId: string, stockDelta: number, statement: () => Promise<T>): Promise<T> {
  return whileRowChanges(tdb, `UPDATE "Sku" SET stock = stock + $1 WHERE id = $2`, [stockDelta, skuId], statement);
}

describe("stock changed by another transaction during a statement (real PostgreSQL)", () => {
  it("a single payment takes the stock a concurrent refund just put back: movement and stock agree", async () => {
    await seedSku("p1-hot", 0);
    await seedOrder("p1", { "p1-hot": 3 });
    await insertNotification(prisma, "p1-n");
    const result = await whileStockChanges("p1-hot", 3, () => applyPaymentStatement(prisma, pay("p1-n", "p1")));
    expect(result.outcome).toBe("APPLIED");
    expect(await movementsOf("p1-o")).toEqual([{ skuId: "p1-hot", delta: -3, reason: "PAYMENT" }]);
    expect(await stockOf("p1-hot")).toBe(0);
  });

  it("a single payment sees stock a concurrent payment just took: OUT_OF_STOCK, nothing moved", async () => {
    await seedSku("p2-hot", 3);
    await seedOrder("p2", { "p2-hot": 3 });
    await insertNotification(prisma, "p2-n");
    const result = await whileStockChanges("p2-hot", -1, () => applyPaymentStatement(prisma, pay("p2-n", "p2")));
    expect(result.outcome).toBe("OUT_OF_STOCK");
    expect(await movementsOf("p2-o")).toEqual([]);
    expect(await stockOf("p2-hot")).toBe(2);
  });

  it("a batch waits for the row before its first payment and applies on the newest stock", async () => {
    await seedSku("p3-hot", 0);
    await seedSku("p3-other", 5);
    await seedOrder("p3a", { "p3-hot": 2 });
    await seedOrder("p3b", { "p3-other": 1 });
    await insertNotification(prisma, "p3a-n");
    await insertNotification(prisma, "p3b-n");
    const results = await whileStockChanges("p3-hot", 2, () =>
      applyPaymentStatements(prisma, [pay("p3a-n", "p3a"), pay("p3b-n", "p3b")]),
    );
    expect(results.map((r) => r.outcome)).toEqual(["APPLIED", "APPLIED"]);
    expect(await stockOf("p3-hot")).toBe(0);
    expect(await stockOf("p3-other")).toBe(4);
  });

  it("a refund restocks on top of stock a concurrent payment just took", async () => {
    await seedSku("r1-hot", 5);
    await seedOrder("r1", { "r1-hot": 2 });
    await insertNotification(prisma, "r1-pay");
    await insertNotification(prisma, "r1-refund", "REFUND.SUCCESS");
    expect((await applyPaymentStatement(prisma, pay("r1-pay", "r1"))).outcome).toBe("APPLIED");
    expect(await stockOf("r1-hot")).toBe(3);
    const result = await whileStockChanges("r1-hot", -3, () =>
      applyRefundStatement(prisma, {
        notificationId: "r1-refund",
        outTradeNo: "r1",
        outRefundNo: "r1-rf",
        refundId: "5030-r1",
        transactionId: "4200-r1",
        mchid: MCHID,
        subMchid: null,
        status: "SUCCESS",
        amountRefund: 300,
        amountTotal: 300,
        successAt: Date.UTC(2026, 10, 30, 4, 0, 0),
        restockOnFullRefund: true,
      }),
    );
    expect(result.outcome).toBe("APPLIED");
    expect(await movementsOf("r1-o")).toEqual([
      { skuId: "r1-hot", delta: -2, reason: "PAYMENT" },
      { skuId: "r1-hot", delta: 2, reason: "REFUND" },
    ]);
    expect(await stockOf("r1-hot")).toBe(2);
  });

  it("a payment whose stock change does not happen is not committed at all (the pairing check)", async () => {
    // A BEFORE UPDATE trigger that silently cancels the stock update stands for anything that could separate a
    // movement from its stock change; the statement must fail instead of committing the movement alone.
    await seedSku("g1-hot", 5);
    await seedOrder("g1", { "g1-hot": 2 });
    await insertNotification(prisma, "g1-n");
    await prisma.$executeRawUnsafe(`CREATE FUNCTION skip_g1_stock() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.id = 'g1-hot' THEN RETURN NULL; END IF; RETURN NEW; END $$`);
    await prisma.$executeRawUnsafe(
      `CREATE TRIGGER skip_g1_stock BEFORE UPDATE ON "Sku" FOR EACH ROW EXECUTE FUNCTION skip_g1_stock()`,
    );
    try {
      const error = await applyPaymentStatement(prisma, pay("g1-n", "g1")).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(error)).toMatch(/recorded 1 movements but changed 0 stock rows/);
      // Retried by the worker (transient), never dead-lettered as bad data.
      expect(classifyDbError(error)).toEqual({ transient: true, code: "DB_ERROR", sqlstate: "XX000" });
    } finally {
      await prisma.$executeRawUnsafe(`DROP TRIGGER skip_g1_stock ON "Sku"`);
      await prisma.$executeRawUnsafe("DROP FUNCTION skip_g1_stock()");
    }
    expect(await movementsOf("g1-o")).toEqual([]);
    expect(await stockOf("g1-hot")).toBe(5);
    const [n] = await prisma.$queryRaw<{ status: string }[]>`SELECT status::text FROM "Notification" WHERE id = 'g1-n'`;
    expect(n?.status).toBe("PROCESSING");
    expect((await applyPaymentStatement(prisma, pay("g1-n", "g1"))).outcome).toBe("APPLIED");
    expect(await stockOf("g1-hot")).toBe(3);
  });
});

describe("an order's items changed by another transaction while a payment waits for the order row", () => {
  // Adding an item holds the order row locked (FOR NO KEY UPDATE, the OrderItem trigger) and leaves it unchanged, so
  // the payment finds the same order version once it has the row: only a read after the wait shows the items committed.
  // order-item-edits.test.ts has the item changes that took no lock on the order before that trigger.
  const addItem = `INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES ($1, $2, 1)`;
  // A same-price size swap: the order's items replaced by one unit of another SKU.
  const swapItems = `WITH gone AS (DELETE FROM "OrderItem" WHERE "orderId" = $1)
    INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES ($1, $2, 1)`;

  it("a single payment takes the stock of an item added meanwhile too", async () => {
    await seedSku("i1-a", 10);
    await seedSku("i1-b", 10);
    await seedOrder("i1", { "i1-a": 1 });
    await insertNotification(prisma, "i1-n");
    const result = await whileRowChanges(tdb, addItem, ["i1-o", "i1-b"], () =>
      applyPaymentStatement(prisma, pay("i1-n", "i1")),
    );
    expect(result.outcome).toBe("APPLIED");
    expect(await movementsOf("i1-o")).toEqual([
      { skuId: "i1-a", delta: -1, reason: "PAYMENT" },
      { skuId: "i1-b", delta: -1, reason: "PAYMENT" },
    ]);
    expect([await stockOf("i1-a"), await stockOf("i1-b")]).toEqual([9, 9]);
  });

  it("a single payment takes the stock of the items a swap committed meanwhile left, not of those it removed", async () => {
    await seedSku("i2-red", 10);
    await seedSku("i2-blue", 10);
    await seedOrder("i2", { "i2-red": 1 });
    await insertNotification(prisma, "i2-n");
    const result = await whileRowChanges(tdb, swapItems, ["i2-o", "i2-blue"], () =>
      applyPaymentStatement(prisma, pay("i2-n", "i2")),
    );
    expect(result).toMatchObject({ outcome: "APPLIED", orderStatus: "SUCCESS" });
    expect(await movementsOf("i2-o")).toEqual([{ skuId: "i2-blue", delta: -1, reason: "PAYMENT" }]);
    expect([await stockOf("i2-red"), await stockOf("i2-blue")]).toEqual([10, 9]);
  });

  it("a batch, the same", async () => {
    await seedSku("i3-red", 10);
    await seedSku("i3-blue", 10);
    await seedOrder("i3a", { "i3-red": 1 });
    await seedOrder("i3b", { "i3-red": 1 });
    await insertNotification(prisma, "i3a-n");
    await insertNotification(prisma, "i3b-n");
    const results = await whileRowChanges(tdb, swapItems, ["i3a-o", "i3-blue"], () =>
      applyPaymentStatements(prisma, [pay("i3a-n", "i3a"), pay("i3b-n", "i3b")]),
    );
    expect(results.map((r) => r.outcome)).toEqual(["APPLIED", "APPLIED"]);
    expect(await movementsOf("i3a-o")).toEqual([{ skuId: "i3-blue", delta: -1, reason: "PAYMENT" }]);
    expect([await stockOf("i3-red"), await stockOf("i3-blue")]).toEqual([9, 9]);
  });
});
