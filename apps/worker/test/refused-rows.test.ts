import { randomBytes } from "node:crypto";
import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import {
  createWorld,
  inline,
  quietLog,
  seedOrder,
  seedSkus,
  v2Payment,
  v2Refund,
  v3Payment,
  type World,
} from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A notification the parse stage refuses for good is recorded (status FAILED, then DEAD by its dead letter) so the
 * dashboard shows it. One that was authenticated and opened before it was refused names an order: its row keeps
 * that out_trade_no and sub_mchid (when of the form the columns accept), so "why was order X not paid?" finds it.
 * Nothing is read from a notification that did not open (found in a walk: rows of refused payments had no order).
 */
let world: World;
const SUB_A = "1900000A11";
beforeAll(async () => {
  world = await createWorld("wrefused");
  await seedSkus(world.prisma, { A: 100 });
});
afterAll(() => world.cleanup());

const rowOf = (id: string) => world.prisma.notification.findUniqueOrThrow({ where: { id } });

describe("the row of a notification refused after it was opened names its order", () => {
  it("APIv3 payment naming a sub-merchant without sp_mchid: out_trade_no and sub_mchid recorded", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo, fields: { sub_mchid: SUB_A } });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID" });
    expect(await rowOf(job.id)).toMatchObject({
      status: "FAILED",
      errorCode: "PAYLOAD_INVALID",
      outTradeNo,
      subMchid: SUB_A,
    });
  });

  it("APIv3 payment failing its schema (empty transaction_id): out_trade_no recorded", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo, fields: { transaction_id: "" } });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID" });
    expect(await rowOf(job.id)).toMatchObject({ status: "FAILED", outTradeNo, subMchid: null });
  });

  it("APIv2 payment (sign verified) naming another merchant: out_trade_no recorded", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v2Payment(world, { outTradeNo, mchid: "1999999999" });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID" });
    expect(await rowOf(job.id)).toMatchObject({ status: "FAILED", outTradeNo });
  });

  it("APIv2 refund (req_info opened) without transaction_id: out_trade_no and out_refund_no, not the unsigned sub_mch_id", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: SUB_A });
    const job = v2Refund(world, {
      outTradeNo,
      transactionId: "",
      outRefundNo: "RF-refused-1",
      refund: 40,
      total: 100,
      partner: { subMchid: SUB_A },
    });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID" });
    expect(await rowOf(job.id)).toMatchObject({
      status: "FAILED",
      outTradeNo,
      outRefundNo: "RF-refused-1",
      subMchid: null,
    });
  });

  it("an out_trade_no longer than the validators accept is not recorded", async () => {
    const job = v2Payment(world, { outTradeNo: "X".repeat(65) });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "PAYLOAD_INVALID" });
    expect(await rowOf(job.id)).toMatchObject({ status: "FAILED", outTradeNo: null });
  });
});

describe("nothing is read from a notification that did not open", () => {
  it("APIv3 payment under another key (DECRYPT_FAILED): no out_trade_no", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo, apiV3Key: randomBytes(32) });
    await expect(inline(world).parse(job)).rejects.toMatchObject({ code: "DECRYPT_FAILED" });
    expect(await rowOf(job.id)).toMatchObject({ status: "FAILED", outTradeNo: null, subMchid: null });
  });
});

describe("through the queues", () => {
  it("the DEAD row of a refused APIv3 payment names its order and sub-merchant", async () => {
    const worker = await startWorker(world.config(), { logger: quietLog, healthPort: 0 });
    const redis = createRedisConnection(TEST_REDIS_URL, "admin");
    const parse = createQueue(QueueName.Parse, redis, world.prefix);
    try {
      const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
      const job = v3Payment(world, { outTradeNo, fields: { sub_mchid: SUB_A } });
      await parse.add(PARSE_JOB_NAME, job, { jobId: job.id });
      await waitFor(
        "DEAD",
        async () => (await world.prisma.notification.findUnique({ where: { id: job.id } }))?.status === "DEAD",
      );
      expect(await rowOf(job.id)).toMatchObject({ errorCode: "PAYLOAD_INVALID", outTradeNo, subMchid: SUB_A });
    } finally {
      await parse.close();
      redis.disconnect();
      await worker.close();
    }
  });
});
