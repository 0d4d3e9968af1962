import { randomBytes } from "node:crypto";
import {
  createQueue,
  createRedisConnection,
  deadLetterSchema,
  PARSE_JOB_NAME,
  type ParseJob,
  QueueName,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
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

/**
 * The dead letter of a refused notification, and its "dead-lettered" line, name the order its row does: an operator
 * reading `notify.dead` or the logs finds which order a refused payment belonged to (found in a review: the row named
 * it, the letter and the line had outTradeNo null). Same values as the row, nothing from a notification that did not
 * open. Window of 1 s: a key fault (DECRYPT_FAILED) and an unknown order are dead-lettered within seconds.
 */
describe("the dead letter and the dead-lettered line name what the row does", () => {
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let redis: ReturnType<typeof createRedisConnection>;
  let parse: ReturnType<typeof createQueue>;
  let dead: ReturnType<typeof createQueue>;
  const log = capturedLog();
  beforeAll(async () => {
    worker = await startWorker(world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "1" }), {
      logger: log.logger,
      healthPort: 0,
    });
    redis = createRedisConnection(TEST_REDIS_URL, "admin");
    parse = createQueue(QueueName.Parse, redis, world.prefix);
    dead = createQueue(QueueName.Dead, redis, world.prefix);
  });
  afterAll(async () => {
    await parse.close();
    await dead.close();
    redis.disconnect();
    await worker.close();
  });

  const keys = (x: Record<string, unknown>) => ({
    outTradeNo: x.outTradeNo,
    subMchid: x.subMchid,
    outRefundNo: x.outRefundNo,
  });

  /** Queues `job` and waits for its DEAD row and its letter from `stage`; the row, the letter and its error line. */
  async function deadLettered(job: ParseJob, stage: string) {
    await parse.add(PARSE_JOB_NAME, job, { jobId: job.id });
    const letter = await waitFor("dead letter", async () => {
      const letters = await dead.getJobs(["waiting"], 0, -1, true);
      return letters.find((l) => l.data?.queue === stage && l.data?.notificationId === job.id);
    });
    const row = await waitFor("DEAD row", async () => {
      const r = await world.prisma.notification.findUnique({ where: { id: job.id } });
      return r?.status === "DEAD" ? r : null;
    });
    const line = await waitFor("dead-lettered line", async () =>
      log.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === "dead-lettered" && l.notificationId === job.id),
    );
    return { row, letter: deadLetterSchema.parse(letter.data), line };
  }

  it("APIv3 payment naming a sub-merchant without sp_mchid: out_trade_no and sub_mchid", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo, fields: { sub_mchid: SUB_A } });
    const { row, letter, line } = await deadLettered(job, QueueName.Parse);
    const named = { outTradeNo, subMchid: SUB_A, outRefundNo: null };
    expect(keys(row)).toEqual(named);
    expect({ code: letter.code, ...keys(letter) }).toEqual({ code: "PAYLOAD_INVALID", ...named });
    expect(line).toMatchObject({ code: "PAYLOAD_INVALID", ...named });
  });

  it("APIv2 refund without transaction_id: out_trade_no and out_refund_no, not the unsigned sub_mch_id", async () => {
    const outTradeNo = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, subMchid: SUB_A });
    const job = v2Refund(world, {
      outTradeNo,
      transactionId: "",
      outRefundNo: "RF-refused-letter",
      refund: 40,
      total: 100,
      partner: { subMchid: SUB_A },
    });
    const { row, letter, line } = await deadLettered(job, QueueName.Parse);
    const named = { outTradeNo, subMchid: null, outRefundNo: "RF-refused-letter" };
    expect(keys(row)).toEqual(named);
    expect(keys(letter)).toEqual(named);
    expect(line).toMatchObject({ code: "PAYLOAD_INVALID", ...named });
  });

  it("nothing from a notification that did not open: MERCHANT_UNKNOWN, DECRYPT_FAILED", async () => {
    const none = { outTradeNo: null, subMchid: null, outRefundNo: null };
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const unknown = { ...v3Payment(world, { outTradeNo: otn, fields: { sub_mchid: SUB_A } }), mchid: "1900000999" };
    const undecryptable = v3Payment(world, { outTradeNo: otn, apiV3Key: randomBytes(32) });
    for (const [job, code] of [
      [unknown, "MERCHANT_UNKNOWN"],
      [undecryptable, "DECRYPT_FAILED"],
    ] as const) {
      const { row, letter, line } = await deadLettered(job, QueueName.Parse);
      expect(keys(row)).toEqual(none);
      expect({ code: letter.code, ...keys(letter) }).toEqual({ code, ...none });
      expect(line).toMatchObject({ code, ...none });
    }
  });

  it("the apply letter of a sub-merchant's payment for an unknown order names the sub-merchant, as its row", async () => {
    const job = v3Payment(world, { outTradeNo: "T-refused-unknown", partner: { subMchid: SUB_A } });
    const { row, letter, line } = await deadLettered(job, QueueName.Apply);
    const named = { outTradeNo: "T-refused-unknown", subMchid: SUB_A, outRefundNo: null };
    expect(keys(row)).toEqual(named);
    expect({ code: letter.code, ...keys(letter) }).toEqual({ code: "ORDER_NOT_FOUND", ...named });
    expect(line).toMatchObject({ code: "ORDER_NOT_FOUND", ...named });
  });
});
