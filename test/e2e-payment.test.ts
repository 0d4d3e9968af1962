import { randomUUID } from "node:crypto";
import {
  createTestDatabase,
  createTestMerchant,
  deletePrefix,
  TEST_REDIS_URL,
  type TestDatabase,
  testQueuePrefix,
  testRsaKeyPair,
} from "@wpn/testing";
import { createSignedV3Notification } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, freePort, type RunningApp, startApp, waitForHttp } from "./support/processes.ts";

/**
 * The first payment end to end, through the real processes: a notification signed with a key the test
 * generates goes through the ingress process into BullMQ; a separate worker process decrypts it and, in one
 * PostgreSQL transaction, marks the order paid and takes the ordered quantities out of stock.
 */
const merchant = createTestMerchant();
const prefix = testQueuePrefix("e2e");
let t: TestDatabase;
let ingress: RunningApp;
let worker: RunningApp;
let base: string;

beforeAll(async () => {
  t = await createTestDatabase("e2e");
  const port = await freePort();
  const workerHealthPort = await freePort();
  const env = {
    ...merchant.env,
    DATABASE_URL: t.url,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    HOST: "127.0.0.1",
    PORT: String(port),
    WORKER_HEALTH_PORT: String(workerHealthPort),
  };
  ingress = startApp("ingress", env);
  worker = startApp("worker", env);
  base = `http://127.0.0.1:${port}`;
  // Ready, not only live: a POST before the ingress's Redis connection is up is answered 503 (QUEUE_UNAVAILABLE).
  await waitForHttp(`${base}/health/ready`, ingress);
  // The worker too: its cold start must not eat into the first test's wait for an applied payment.
  await waitForHttp(`http://127.0.0.1:${workerHealthPort}/health/ready`, worker);
}, 90_000);

afterAll(async () => {
  const codes = await Promise.all([ingress?.stop(), worker?.stop()]);
  await t?.drop();
  await deletePrefix(prefix);
  // Both processes shut down cleanly on SIGTERM.
  expect(codes).toEqual([0, 0]);
});

async function seedOrder(outTradeNo: string, amountTotal: number, items: Array<[sku: string, qty: number]>) {
  const { rows } = await t.db.pool.query<{ id: string }>(
    `INSERT INTO "Order" ("outTradeNo", mchid, appid, "amountTotal") VALUES ($1, $2, $3, $4) RETURNING id`,
    [outTradeNo, merchant.mchid, merchant.appid, amountTotal],
  );
  const orderId = rows[0]?.id as string;
  for (const [sku, qty] of items) {
    await t.db.pool.query(`INSERT INTO "Sku" (id, name, stock) VALUES ($1, $1, 10) ON CONFLICT (id) DO NOTHING`, [sku]);
    await t.db.pool.query(`INSERT INTO "OrderItem" ("orderId", "skuId", quantity) VALUES ($1, $2, $3)`, [
      orderId,
      sku,
      qty,
    ]);
  }
  return orderId;
}

function paymentNotification(outTradeNo: string, total: number, id: string, privateKey = merchant.platformPrivateKey) {
  return createSignedV3Notification({
    id,
    eventType: "TRANSACTION.SUCCESS",
    resourceType: "encrypt-resource",
    summary: "支付成功",
    originalType: "transaction",
    resource: {
      mchid: merchant.mchid,
      appid: merchant.appid,
      out_trade_no: outTradeNo,
      transaction_id: `4200${Date.now()}${Math.floor(Math.random() * 1e6)}`,
      trade_type: "JSAPI",
      trade_state: "SUCCESS",
      trade_state_desc: "支付成功",
      bank_type: "OTHERS",
      success_time: "2026-11-29T20:00:00+08:00",
      payer: { openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
      amount: { total, payer_total: total, currency: "CNY", payer_currency: "CNY" },
    },
    apiV3Key: Buffer.from(merchant.apiV3Key),
    privateKey,
    serial: merchant.publicKeyId,
  });
}

function post(notification: { headers: Record<string, string>; body: Buffer }) {
  return fetch(`${base}/notify/v3`, { method: "POST", headers: notification.headers, body: notification.body });
}

async function orderState(orderId: string) {
  const order = await t.db.prisma.order.findUniqueOrThrow({ where: { id: orderId } });
  const stock = await t.db.pool.query<{ id: string; stock: number }>(`SELECT id, stock FROM "Sku" ORDER BY id`);
  const movements = await t.db.prisma.inventoryMovement.findMany({ where: { orderId }, orderBy: { skuId: "asc" } });
  return { order, stock: stock.rows, movements };
}

describe("first payment, end to end through real processes", () => {
  it("marks the order paid and takes stock once, however often WeChat resends", async () => {
    const outTradeNo = `e2e-${randomUUID()}`;
    const orderId = await seedOrder(outTradeNo, 1999, [
      ["sku-a", 2],
      ["sku-b", 1],
    ]);
    const id = randomUUID();

    const first = await post(paymentNotification(outTradeNo, 1999, id));
    expect(first.status).toBe(204);
    expect(await first.text()).toBe("");

    const paid = await eventually(
      async () => {
        const state = await orderState(orderId);
        return state.order.status === "SUCCESS" ? state : undefined;
      },
      20_000,
      "the order to be paid",
    );
    expect(paid.order.transactionId).toMatch(/^4200/);
    expect(paid.order.payerOpenid).toBe("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    expect(paid.order.paidAt).toBeInstanceOf(Date);
    expect(paid.stock).toEqual([
      { id: "sku-a", stock: 8 },
      { id: "sku-b", stock: 9 },
    ]);
    expect(paid.movements.map((m) => [m.skuId, m.delta])).toEqual([
      ["sku-a", -2],
      ["sku-b", -1],
    ]);
    // Its id is the verifying merchant's and WeChat's (`v3:<mchid>:<id>`), WeChat's id kept beside it.
    const notification = await t.db.prisma.notification.findFirstOrThrow({ where: { wechatId: id } });
    expect(notification.id).toBe(`v3:${notification.mchid}:${id}`);
    expect(notification.status).toBe("APPLIED");
    expect(notification.body).not.toContain(outTradeNo); // the resource stays encrypted at rest

    // WeChat resends the same notification (same id, freshly signed) five more times.
    for (let i = 0; i < 5; i++) {
      expect((await post(paymentNotification(outTradeNo, 1999, id))).status).toBe(204);
    }
    await new Promise((r) => setTimeout(r, 1_500));
    const after = await orderState(orderId);
    expect(after.stock).toEqual(paid.stock);
    expect(after.movements).toHaveLength(2);
    expect(after.order.status).toBe("SUCCESS");
  });

  it("rejects a forged notification and changes nothing", async () => {
    const outTradeNo = `e2e-${randomUUID()}`;
    const orderId = await seedOrder(outTradeNo, 500, [["sku-c", 1]]);
    const forger = testRsaKeyPair().privateKey;
    const id = randomUUID();

    const response = await post(paymentNotification(outTradeNo, 500, id, forger));
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ code: "FAIL" });

    await new Promise((r) => setTimeout(r, 1_500));
    const state = await orderState(orderId);
    expect(state.order.status).toBe("NOTPAY");
    expect(state.stock.find((s) => s.id === "sku-c")?.stock).toBe(10);
    expect(state.movements).toHaveLength(0);
    expect(await t.db.prisma.notification.findFirst({ where: { OR: [{ id }, { wechatId: id }] } })).toBeNull();
  });

  it("puts an order whose amount does not match in PAYMENT_REVIEW and takes no stock", async () => {
    const outTradeNo = `e2e-${randomUUID()}`;
    const orderId = await seedOrder(outTradeNo, 1000, [["sku-d", 1]]);
    expect((await post(paymentNotification(outTradeNo, 1, randomUUID()))).status).toBe(204);
    const state = await eventually(
      async () => {
        const s = await orderState(orderId);
        return s.order.status === "PAYMENT_REVIEW" ? s : undefined;
      },
      20_000,
      "the order to be flagged",
    );
    expect(state.order.reviewReason).toBe("AMOUNT_MISMATCH");
    expect(state.stock.find((s) => s.id === "sku-d")?.stock).toBe(10);
    expect(state.movements).toHaveLength(0);
  });
});
