import { applyPaymentStatement, type PrismaClient, paymentStatement } from "@wpn/db";
import { createTestDatabase, type TestDatabase, waitsForLock } from "@wpn/testing";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APPID, insertNotification, MCHID, paymentFacts as pay } from "./support/payments.ts";

/**
 * The shop's own edits of an order's items (a size swap before paying, an item removed) racing a payment of that
 * order, with the shop's transaction taking no lock of its own: the OrderItem trigger (migration 20261206110000)
 * locks the order row, so the edit and the payment run one after the other, and an edit that comes after the
 * payment took the stock is refused. Each test makes the interleaving certain: one side's transaction stays open
 * until the other is seen waiting for a lock (or has finished without waiting).
 */

let tdb: TestDatabase;
let prisma: PrismaClient;
beforeAll(async () => {
  tdb = await createTestDatabase("dbitemedit");
  prisma = tdb.db.prisma;
});
afterAll(async () => {
  await tdb?.drop();
});

/** SQLSTATE and constraint of the refusal (README, "Exactly once under concurrency" in apps/worker). */
const STOCK_TAKEN = { code: "23000", constraint: "OrderItem_stock_taken" };

async function seedSku(id: string, stock: number): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Sku" (id, name, stock) VALUES (${id}, 'sku', ${stock})`;
}

async function seedOrder(label: string, items: Record<string, number>): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal")
    VALUES (${`${label}-o`}, ${label}, ${MCHID}, ${APPID}, 300)`;
  for (const [sku, quantity] of Object.entries(items)) {
    await prisma.$executeRaw`INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES (${`${label}-o`}, ${sku}, ${quantity})`;
  }
}

/** The order's items and movements, and the stock of `skus`, in one comparable value. */
async function stateOf(orderId: string, skus: string[]) {
  const items = await prisma.$queryRaw<{ skuId: string; quantity: number }[]>`
    SELECT "skuId", quantity FROM "OrderItem" WHERE "orderId" = ${orderId} ORDER BY "skuId"`;
  const movements = await prisma.$queryRaw<{ skuId: string; delta: number }[]>`
    SELECT "skuId", delta FROM "InventoryMovement" WHERE "orderId" = ${orderId} AND reason = 'PAYMENT' ORDER BY "skuId"`;
  const stock = await prisma.$queryRaw<{ id: string; stock: number }[]>`
    SELECT id, stock FROM "Sku" WHERE id = ANY(${skus}) ORDER BY id`;
  return { items, movements, stock: Object.fromEntries(stock.map((s) => [s.id, s.stock])) };
}

/** Runs `body` on a connection of its own inside a transaction that `body` ends; rolled back if it does not. */
async function inTransaction<T>(body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await tdb.db.pool.connect();
  try {
    await client.query("BEGIN");
    return await body(client);
  } finally {
    // A no-op (a warning) after COMMIT; never hands a connection holding locks back to the pool.
    await client.query("ROLLBACK");
    client.release();
  }
}

/** The error `promise` rejects with, or undefined when it resolves. */
function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe("an item edit not committed yet when a payment of its order starts (real PostgreSQL)", () => {
  it.each([
    {
      what: "a size swap, RED → BLUE (UPDATE)",
      items: { RED: 1 },
      edit: `UPDATE "OrderItem" SET "skuId" = $2 || '-BLUE' WHERE "orderId" = $1 || '-o'`,
      left: { BLUE: 1 },
    },
    {
      what: "an item removed (DELETE)",
      items: { RED: 1, BLUE: 1 },
      edit: `DELETE FROM "OrderItem" WHERE "orderId" = $1 || '-o' AND "skuId" = $2 || '-RED'`,
      left: { BLUE: 1 },
    },
  ])("$what: the payment waits for it and takes the stock of the items it committed", async ({ items, edit, left }) => {
    const label = `e${Object.keys(items).length}`;
    await seedSku(`${label}-RED`, 10);
    await seedSku(`${label}-BLUE`, 10);
    await seedOrder(
      label,
      Object.fromEntries(Object.entries(items).map(([sku, quantity]) => [`${label}-${sku}`, quantity])),
    );
    await insertNotification(prisma, `${label}-n`);

    const { waited, result } = await inTransaction(async (shop) => {
      await shop.query(edit, [label, label]);
      const payment = applyPaymentStatement(prisma, pay(`${label}-n`, label));
      const waited = await waitsForLock(tdb, payment);
      await shop.query("COMMIT");
      return { waited, result: await payment };
    });

    const expected = Object.entries(left).map(([sku, quantity]) => ({ skuId: `${label}-${sku}`, quantity }));
    expect({
      waited,
      outcome: result.outcome,
      ...(await stateOf(`${label}-o`, [`${label}-RED`, `${label}-BLUE`])),
    }).toEqual({
      waited: true,
      outcome: "APPLIED",
      items: expected,
      movements: expected.map((i) => ({ skuId: i.skuId, delta: -i.quantity })),
      stock: { [`${label}-RED`]: 10, [`${label}-BLUE`]: 9 },
    });
  });
});

describe("an item edit while a payment of its order is not committed yet", () => {
  it("waits for the payment, then is refused: the items are what the payment took the stock of", async () => {
    await seedSku("w-RED", 10);
    await seedSku("w-BLUE", 10);
    await seedOrder("w", { "w-RED": 1 });
    await insertNotification(prisma, "w-n");

    const { waited, edited } = await inTransaction(async (worker) => {
      const statement = paymentStatement([pay("w-n", "w")]);
      const [row] = (await worker.query<{ outcome: string }>(statement.text, statement.values)).rows;
      expect(row?.outcome).toBe("APPLIED");
      const edit = failureOf(tdb.db.pool.query(`UPDATE "OrderItem" SET "skuId" = 'w-BLUE' WHERE "orderId" = 'w-o'`));
      const waited = await waitsForLock(tdb, edit);
      await worker.query("COMMIT");
      return { waited, edited: await edit };
    });

    expect({ waited, refusal: { ...(edited as object) } }).toMatchObject({ waited: true, refusal: STOCK_TAKEN });
    expect(await stateOf("w-o", ["w-RED", "w-BLUE"])).toEqual({
      items: [{ skuId: "w-RED", quantity: 1 }],
      movements: [{ skuId: "w-RED", delta: -1 }],
      stock: { "w-RED": 9, "w-BLUE": 10 },
    });
  });
});

describe("the items of an order whose payment took its stock do not change", () => {
  it("UPDATE, DELETE and INSERT of a paid order's items are refused; an unpaid order's are not", async () => {
    await seedSku("r-RED", 10);
    await seedSku("r-BLUE", 10);
    await seedOrder("rp", { "r-RED": 1 });
    await seedOrder("ru", { "r-RED": 1 });
    await insertNotification(prisma, "rp-n");
    expect((await applyPaymentStatement(prisma, pay("rp-n", "rp"))).outcome).toBe("APPLIED");

    const edits = [
      `UPDATE "OrderItem" SET "skuId" = 'r-BLUE' WHERE "orderId" = $1`,
      `UPDATE "OrderItem" SET quantity = 2 WHERE "orderId" = $1`,
      `DELETE FROM "OrderItem" WHERE "orderId" = $1`,
      `INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES ($1, 'r-BLUE', 1)`,
    ];
    for (const edit of edits) {
      const refused = await failureOf(tdb.db.pool.query(edit, ["rp-o"]));
      expect({ edit, refusal: { ...(refused as object) } }).toMatchObject({ edit, refusal: STOCK_TAKEN });
      expect(String(refused)).toMatch(/items of order rp-o are sold/);
    }
    // An item moved from an unpaid order to a paid one, or back, changes the paid one's items: refused both ways.
    const [unpaidItem] = (
      await tdb.db.pool.query<{ id: string }>(`SELECT id FROM "OrderItem" WHERE "orderId" = 'ru-o'`)
    ).rows;
    const [paidItem] = (await tdb.db.pool.query<{ id: string }>(`SELECT id FROM "OrderItem" WHERE "orderId" = 'rp-o'`))
      .rows;
    for (const [id, to] of [
      [unpaidItem?.id, "rp-o"],
      [paidItem?.id, "ru-o"],
    ]) {
      const refused = await failureOf(
        tdb.db.pool.query(`UPDATE "OrderItem" SET "orderId" = $2 WHERE id = $1`, [id, to]),
      );
      expect({ ...(refused as object) }).toMatchObject(STOCK_TAKEN);
    }
    expect(await stateOf("rp-o", ["r-RED", "r-BLUE"])).toEqual({
      items: [{ skuId: "r-RED", quantity: 1 }],
      movements: [{ skuId: "r-RED", delta: -1 }],
      stock: { "r-RED": 9, "r-BLUE": 10 },
    });

    for (const edit of edits) await tdb.db.pool.query(edit, ["ru-o"]);
    expect((await stateOf("ru-o", [])).items).toEqual([{ skuId: "r-BLUE", quantity: 1 }]);
  });

  it("an order in review with no stock taken (OUT_OF_STOCK) keeps editable items; a paid order is still deleted whole", async () => {
    await seedSku("v-SHORT", 0);
    await seedSku("v-OK", 5);
    await seedOrder("v", { "v-SHORT": 1 });
    await insertNotification(prisma, "v-n");
    expect((await applyPaymentStatement(prisma, pay("v-n", "v"))).outcome).toBe("OUT_OF_STOCK");
    await tdb.db.pool.query(`UPDATE "OrderItem" SET "skuId" = 'v-OK' WHERE "orderId" = 'v-o'`);
    expect((await stateOf("v-o", [])).items).toEqual([{ skuId: "v-OK", quantity: 1 }]);

    await seedOrder("d", { "v-OK": 1 });
    await insertNotification(prisma, "d-n");
    expect((await applyPaymentStatement(prisma, pay("d-n", "d"))).outcome).toBe("APPLIED");
    // ON DELETE CASCADE deletes its items (and movements) after the order row is gone: nothing left to protect.
    await tdb.db.pool.query(`DELETE FROM "Order" WHERE id = 'd-o'`);
    expect(await stateOf("d-o", [])).toEqual({ items: [], movements: [], stock: {} });
  });
});
