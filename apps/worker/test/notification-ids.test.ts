import { randomBytes } from "node:crypto";
import { type ParseJobV3, v3NotificationId } from "@wpn/queue";
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

/** The same notification (same body) as an older ingress queued it and as WeChat's resend is queued now. */
function bothForms(legacy: ParseJobV3): { legacy: ParseJobV3; current: ParseJobV3 } {
  return { legacy, current: { ...legacy, id: v3NotificationId(world.merchant.mchid, legacy.id) } };
}

describe("a deploy in the middle of WeChat's resends: a job queued under WeChat's id alone and its resend under the new id", () => {
  for (const order of ["old id first", "new id first"] as const) {
    it(`${order}: the payment is applied once, the second notification is DUPLICATE of the first, not applied`, async () => {
      const otn = await seedOrder(world, { amountTotal: 100, items: { A: 2 } });
      const stock = await stockOf(world.prisma);
      const { legacy, current } = bothForms(v3Payment(world, { outTradeNo: otn, legacyId: true }));
      const [first, second] = order === "old id first" ? [legacy, current] : [current, legacy];
      const run = inline(world);
      expect((await run.deliver(first)).apply?.outcome).toBe("APPLIED");
      const again = await run.deliver(second);
      // Before, it was applied as a second notification, which the payment statement answered DUPLICATE.
      expect(again.parse).toEqual({ outcome: "DUPLICATE", duplicateOf: first.id });
      expect(again.applyJob).toBeNull();
      const paid = await orderOf(world.prisma, otn);
      expect(paid.status).toBe("SUCCESS");
      expect(paid.movements.map((m) => [m.skuId, m.delta])).toEqual([["A", -2]]);
      expect((await stockOf(world.prisma)).A).toBe((stock.A ?? 0) - 2);
      expect(await rowOf(first.id)).toMatchObject({ status: "APPLIED", wechatId: legacy.id });
      expect(await rowOf(second.id)).toMatchObject({ status: "DUPLICATE", wechatId: legacy.id });
      // The resend's job run again (stalled, or its batch's enqueue failed): still DUPLICATE of the first, not
      // ALREADY, and no entry added.
      expect(await run.parse(second)).toEqual({
        parse: { outcome: "DUPLICATE", duplicateOf: first.id },
        applyJob: null,
      });
      const timeline = await world.prisma.notificationEvent.findMany({
        where: { notificationId: second.id },
        orderBy: { id: "asc" },
      });
      expect(timeline.map((e) => e.kind)).toEqual(["RECEIVED", "DUPLICATE"]);
    });
  }

  it("a refund likewise: recorded and counted once", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    expect(
      (await inline(world).deliver(v3Payment(world, { outTradeNo: otn, transactionId: "4200000777" }))).apply?.outcome,
    ).toBe("APPLIED");
    const { legacy, current } = bothForms(
      v3Refund(world, { outTradeNo: otn, transactionId: "4200000777", refund: 40, total: 100, legacyId: true }),
    );
    const run = inline(world);
    expect((await run.deliver(legacy)).apply?.outcome).toBe("APPLIED");
    expect((await run.deliver(current)).parse.outcome).toBe("DUPLICATE");
    expect(await rowOf(current.id)).toMatchObject({ status: "DUPLICATE" });
    const order = await orderOf(world.prisma, otn);
    expect(order.refundedTotal).toBe(40);
    expect(order.refunds).toHaveLength(1);
  });
});

describe("a resend straddling the deploy of a notification put in review is not reviewed twice", () => {
  /**
   * Review verdicts the order does not absorb: a second notification reached them again — a second REVIEW row (the
   * dashboard's /reviews listed it twice) and a second payment.review / refund.review under its own notificationId,
   * which consumers, deduplicating on notificationId, acted on twice (e.g. "refund the second charge" twice).
   * Each case sets up the orders and answers the notification put in review, queued under WeChat's id alone.
   */
  /** A second charge of a paid order (DUPLICATE_PAYMENT: its payment.review asks for a refund of it). */
  async function secondCharge(): Promise<ParseJobV3> {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    await inline(world).deliver(v3Payment(world, { outTradeNo: otn }));
    return v3Payment(world, { outTradeNo: otn, legacyId: true });
  }
  const cases: { reason: string; setup(): Promise<ParseJobV3> }[] = [
    { reason: "DUPLICATE_PAYMENT", setup: secondCharge },
    {
      reason: "TRANSACTION_CONFLICT",
      async setup() {
        const [a, b] = [await seedOrder(world, { items: { A: 1 } }), await seedOrder(world, { items: { A: 1 } })];
        const transactionId = `4200${randomId()}`;
        await inline(world).deliver(v3Payment(world, { outTradeNo: a, transactionId }));
        return v3Payment(world, { outTradeNo: b, transactionId, legacyId: true });
      },
    },
    {
      reason: "REFUND_ID_CONFLICT",
      async setup() {
        const [a, b] = [await seedOrder(world, { items: { A: 1 } }), await seedOrder(world, { items: { A: 1 } })];
        const [ta, tb, refundId] = [`4200${randomId()}`, `4200${randomId()}`, `5000${randomId()}`];
        const run = inline(world);
        await run.deliver(v3Payment(world, { outTradeNo: a, transactionId: ta }));
        await run.deliver(v3Payment(world, { outTradeNo: b, transactionId: tb }));
        await run.deliver(v3Refund(world, { outTradeNo: a, transactionId: ta, refundId, refund: 10, total: 100 }));
        return v3Refund(world, { outTradeNo: b, transactionId: tb, refundId, refund: 10, total: 100, legacyId: true });
      },
    },
    {
      reason: "REFUND_CONFLICT",
      async setup() {
        const otn = await seedOrder(world, { items: { A: 1 } });
        const [transactionId, outRefundNo] = [`4200${randomId()}`, `R${randomId()}`];
        const run = inline(world);
        await run.deliver(v3Payment(world, { outTradeNo: otn, transactionId }));
        await run.deliver(v3Refund(world, { outTradeNo: otn, transactionId, outRefundNo, refund: 10, total: 100 }));
        return v3Refund(world, { outTradeNo: otn, transactionId, outRefundNo, refund: 20, total: 100, legacyId: true });
      },
    },
  ];
  for (const { reason, setup } of cases) {
    for (const order of ["old id first", "new id first"] as const) {
      it(`${reason}, ${order}: one REVIEW row and one review event; the resend is DUPLICATE of it`, async () => {
        const { legacy, current } = bothForms(await setup());
        const [first, second] = order === "old id first" ? [legacy, current] : [current, legacy];
        const run = inline(world);
        expect((await run.deliver(first)).apply?.outcome).toBe(reason);
        const again = await run.deliver(second);
        expect(run.published.map((e) => [e.type.endsWith(".review"), e.notificationId, e.reviewReason])).toEqual([
          [true, first.id, reason],
        ]);
        const rows = await world.prisma.notification.findMany({
          where: { wechatId: legacy.id },
          select: { id: true, status: true, errorCode: true },
        });
        expect(rows.filter((r) => r.status === "REVIEW")).toEqual([
          { id: first.id, status: "REVIEW", errorCode: reason },
        ]);
        // Not applied: a DUPLICATE row naming the first.
        expect(again.parse).toEqual({ outcome: "DUPLICATE", duplicateOf: first.id });
        expect(again.applyJob).toBeNull();
        expect(await rowOf(second.id)).toMatchObject({ status: "DUPLICATE", errorCode: null });
        const entries = await world.prisma.notificationEvent.findMany({
          where: { notificationId: second.id },
          orderBy: { id: "asc" },
        });
        expect(entries.map((e) => [e.kind, (e.detail as { duplicateOf?: string }).duplicateOf])).toEqual([
          ["RECEIVED", undefined],
          ["DUPLICATE", first.id],
        ]);
      });
    }
  }

  it("another merchant's notification carrying the id of a reviewed one is its own notification, applied", async () => {
    const reviewed = await secondCharge();
    const run = inline(world);
    expect((await run.deliver(reviewed)).apply?.outcome).toBe("DUPLICATE_PAYMENT");
    // Tenant B signs, with its own keys, a payment of its own order under the reviewed notification's WeChat id.
    const ofB = await seedOrder(world, { items: { A: 1 }, mchid: tenantB.mchid, appid: tenantB.appid });
    const forged = {
      ...v3Payment(world, { outTradeNo: ofB, id: reviewed.id, ...tenantB, apiV3Key: Buffer.from(tenantB.apiV3Key) }),
      id: v3NotificationId(tenantB.mchid, reviewed.id),
      mchid: tenantB.mchid,
    };
    const delivered = await run.deliver(forged);
    expect(delivered.parse.outcome).toBe("QUEUED");
    expect(delivered.apply?.outcome).toBe("APPLIED");
  });
});

/** A random suffix for transaction, refund and out_refund_no ids. */
function randomId(): string {
  return randomBytes(6).toString("hex");
}
