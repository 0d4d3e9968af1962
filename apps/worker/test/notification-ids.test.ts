import { v3NotificationId } from "@wpn/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createWorld,
  inline,
  orderOf,
  seedOrder,
  seedSkus,
  stockOf,
  v3Payment,
  v3Refund,
  type World,
} from "./support/fixtures.ts";

/**
 * APIv3 notification ids in PostgreSQL: `v3:<mchid>:<WeChat's id>` (the merchant whose keys verified it), WeChat's
 * id kept in `wechatId`; and the jobs an ingress from before that form queued under WeChat's id alone.
 */

let world: World;
/** Tenant B: a merchant of the Merchant table with key material of its own. */
const tenantB = { mchid: "1900000333", appid: "wx0000000000000333", apiV3Key: "b".repeat(32) };

beforeAll(async () => {
  world = await createWorld("wids");
  await seedSkus(world.prisma, { A: 100 });
  await world.prisma.merchant.create({ data: { ...tenantB, apiV2Key: null } });
});
afterAll(() => world.cleanup());

const rowOf = (id: string) => world.prisma.notification.findUniqueOrThrow({ where: { id } });

describe("a notification's row is its merchant's", () => {
  it("records WeChat's id beside the notification id", async () => {
    const otn = await seedOrder(world, { items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo: otn, id: "EV-2018022511223320873" });
    expect(job.id).toBe(`v3:${world.merchant.mchid}:EV-2018022511223320873`);
    expect((await inline(world).deliver(job)).apply?.outcome).toBe("APPLIED");
    expect(await rowOf(job.id)).toMatchObject({ wechatId: "EV-2018022511223320873", mchid: world.merchant.mchid });
  });

  it("another merchant's notification with the same WeChat id does not settle the genuine one's row", async () => {
    // Tenant B signs, with its own keys, a payment of its own order carrying merchant A's envelope id.
    const ofB = await seedOrder(world, { items: { A: 1 }, mchid: tenantB.mchid, appid: tenantB.appid });
    const ofA = await seedOrder(world, { items: { A: 1 } });
    const wechatId = "3119dfba-e649-5eec-ab1e-3412bc4d2e17";
    const forged = {
      ...v3Payment(world, { outTradeNo: ofB, id: wechatId, ...tenantB, apiV3Key: Buffer.from(tenantB.apiV3Key) }),
      id: v3NotificationId(tenantB.mchid, wechatId),
      mchid: tenantB.mchid,
    };
    const genuine = v3Payment(world, { outTradeNo: ofA, id: wechatId });
    const run = inline(world);
    expect((await run.deliver(forged)).apply?.outcome).toBe("APPLIED");
    const delivered = await run.deliver(genuine);
    expect(delivered.parse.outcome).toBe("QUEUED");
    expect(delivered.apply?.outcome).toBe("APPLIED");
    expect((await orderOf(world.prisma, ofA)).status).toBe("SUCCESS");
    const rows = await world.prisma.notification.findMany({ where: { wechatId }, orderBy: { mchid: "asc" } });
    expect(rows.map((r) => [r.mchid, r.status])).toEqual([
      [world.merchant.mchid, "APPLIED"],
      [tenantB.mchid, "APPLIED"],
    ]);
  });
});

describe("a deploy in the middle of WeChat's resends: a job queued under WeChat's id alone and its resend under the new id", () => {
  for (const order of ["old id first", "new id first"] as const) {
    it(`${order}: the payment is applied once, the second notification is DUPLICATE`, async () => {
      const otn = await seedOrder(world, { amountTotal: 100, items: { A: 2 } });
      const stock = await stockOf(world.prisma);
      // The same notification (same body) as an older ingress queued it and as WeChat's resend is queued now.
      const legacy = v3Payment(world, { outTradeNo: otn, legacyId: true });
      const current = { ...legacy, id: v3NotificationId(world.merchant.mchid, legacy.id) };
      const [first, second] = order === "old id first" ? [legacy, current] : [current, legacy];
      const run = inline(world);
      expect((await run.deliver(first)).apply?.outcome).toBe("APPLIED");
      const again = await run.deliver(second);
      expect(again.parse.outcome).toBe("QUEUED");
      expect(again.apply?.outcome).toBe("DUPLICATE");
      const paid = await orderOf(world.prisma, otn);
      expect(paid.status).toBe("SUCCESS");
      expect(paid.movements.map((m) => [m.skuId, m.delta])).toEqual([["A", -2]]);
      expect((await stockOf(world.prisma)).A).toBe((stock.A ?? 0) - 2);
      expect(await rowOf(first.id)).toMatchObject({ status: "APPLIED", wechatId: legacy.id });
      expect(await rowOf(second.id)).toMatchObject({ status: "DUPLICATE", wechatId: legacy.id });
    });
  }

  it("a refund likewise: recorded and counted once", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    expect(
      (await inline(world).deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000777" }))).apply?.outcome,
    ).toBe("APPLIED");
    const legacy = v3Refund(world, {
      outTradeNo: otn,
      transactionId: "4200000777",
      refund: 40,
      total: 100,
      legacyId: true,
    });
    const current = { ...legacy, id: v3NotificationId(world.merchant.mchid, legacy.id) };
    const run = inline(world);
    expect((await run.deliver(legacy)).apply?.outcome).toBe("APPLIED");
    expect((await run.deliver(current)).apply?.outcome).toBe("DUPLICATE");
    const order = await orderOf(world.prisma, otn);
    expect(order.refundedTotal).toBe(40);
    expect(order.refunds).toHaveLength(1);
  });
});
