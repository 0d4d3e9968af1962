import { randomBytes, randomUUID } from "node:crypto";
import { type Config, loadConfig } from "@wpn/config";
import { type PrismaClient, upsertParsedNotifications } from "@wpn/db";
import {
  type ApplyJob,
  type ParseJob,
  type ParseJobV2,
  type ParseJobV3,
  type PublishEvent,
  v3NotificationId,
} from "@wpn/queue";
import {
  createTestDatabase,
  createTestMerchant,
  deletePrefix,
  TEST_REDIS_URL,
  type TestDatabase,
  type TestMerchant,
  testQueuePrefix,
} from "@wpn/testing";
import { buildV2Xml, createSignedV3Notification, encryptV2ReqInfo, signV2 } from "@wpn/wechatpay";
import { type Logger, pino } from "pino";
import { prismaApplyStore } from "../../src/domain/store.ts";
import { MerchantKeyResolver } from "../../src/keys.ts";
import { type ApplyResult, handleApply } from "../../src/workers/apply.processor.ts";
import { PaymentBatcher } from "../../src/workers/apply-batch.ts";
import { handleParse, type ParseResult } from "../../src/workers/parse.processor.ts";
import { ParseBatcher } from "../../src/workers/parse-batch.ts";
import type { StageContext } from "../../src/workers/stage.ts";

/** One test file's world: its own PostgreSQL schema, BullMQ prefix and freshly keyed merchant. */
export interface World {
  db: TestDatabase;
  prisma: PrismaClient;
  prefix: string;
  merchant: TestMerchant;
  /** Environment for a worker process or `loadConfig`. */
  env: Record<string, string>;
  config(overrides?: Record<string, string>): Config;
  cleanup(): Promise<void>;
}

export async function createWorld(label: string): Promise<World> {
  const db = await createTestDatabase(label);
  const prefix = testQueuePrefix(label);
  const merchant = createTestMerchant();
  const env: Record<string, string> = {
    ...merchant.env,
    DATABASE_URL: db.url,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: "warn",
    NODE_ENV: "test",
    WORKER_HEALTH_PORT: "0",
    PG_POOL_MAX: "4",
    WORKER_CONCURRENCY: "4",
  };
  return {
    db,
    prisma: db.db.prisma,
    prefix,
    merchant,
    env,
    config: (overrides = {}) => loadConfig({ ...env, ...overrides }),
    async cleanup() {
      await db.drop();
      await deletePrefix(prefix);
    },
  };
}

export const quietLog = pino({ level: "silent" });

/** `windowOver`: a handler called directly has no retry to wait for, so the window is over unless told otherwise. */
export function testContext(log: Logger = quietLog, windowOver = true): StageContext {
  return { log, setKeys: () => undefined, windowOver: async () => windowOver };
}

// ---------------------------------------------------------------- data

export async function seedSkus(prisma: PrismaClient, skus: Record<string, number>): Promise<void> {
  await prisma.sku.createMany({ data: Object.entries(skus).map(([id, stock]) => ({ id, name: `SKU ${id}`, stock })) });
}

export interface OrderSeed {
  outTradeNo?: string;
  amountTotal?: number;
  items: Record<string, number>;
  mchid?: string;
  appid?: string;
  subMchid?: string | null;
  subAppid?: string | null;
  status?: "NOTPAY" | "CLOSED";
  currency?: string;
}

/** Inserts an order with its items the way a checkout does (one transaction). Returns its out_trade_no. */
export async function seedOrder(world: World, seed: OrderSeed): Promise<string> {
  const outTradeNo = seed.outTradeNo ?? `T${randomBytes(8).toString("hex")}`;
  await world.prisma.order.create({
    data: {
      outTradeNo,
      mchid: seed.mchid ?? world.merchant.mchid,
      appid: seed.appid ?? world.merchant.appid,
      subMchid: seed.subMchid ?? null,
      subAppid: seed.subAppid ?? null,
      amountTotal: seed.amountTotal ?? 100,
      currency: seed.currency ?? "CNY",
      status: seed.status ?? "NOTPAY",
      items: { create: Object.entries(seed.items).map(([skuId, quantity]) => ({ skuId, quantity })) },
    },
  });
  return outTradeNo;
}

/** Many orders in two statements (for the large scenarios); returns their out_trade_nos in order. */
export async function seedOrders(world: World, seeds: (OrderSeed & { outTradeNo: string })[]): Promise<string[]> {
  const rows = seeds.map((seed) => ({ seed, id: randomUUID() }));
  await world.prisma.order.createMany({
    data: rows.map(({ seed, id }) => ({
      id,
      outTradeNo: seed.outTradeNo,
      mchid: seed.mchid ?? world.merchant.mchid,
      appid: seed.appid ?? world.merchant.appid,
      amountTotal: seed.amountTotal ?? 100,
    })),
  });
  await world.prisma.orderItem.createMany({
    data: rows.flatMap(({ seed, id }) =>
      Object.entries(seed.items).map(([skuId, quantity]) => ({ orderId: id, skuId, quantity })),
    ),
  });
  return seeds.map((s) => s.outTradeNo);
}

export async function stockOf(prisma: PrismaClient): Promise<Record<string, number>> {
  const rows = await prisma.sku.findMany({ select: { id: true, stock: true }, orderBy: { id: "asc" } });
  return Object.fromEntries(rows.map((r) => [r.id, r.stock]));
}

/** The order under `outTradeNo`: the tests give every order a number of its own, whatever its merchant. */
export function orderOf(prisma: PrismaClient, outTradeNo: string) {
  return prisma.order.findFirstOrThrow({ where: { outTradeNo }, include: { movements: true, refunds: true } });
}

// ---------------------------------------------------------------- notifications (as the ingress enqueues them)

export interface PaymentSpec {
  outTradeNo: string;
  transactionId?: string;
  total?: number;
  currency?: string;
  mchid?: string;
  appid?: string;
  tradeState?: string;
  /** Service-provider mode: sp_mchid/sp_appid replace mchid/appid. */
  partner?: { subMchid: string; subAppid?: string };
  /** WeChat's envelope id (random when omitted). */
  id?: string;
  /** Queued as an ingress from before the `v3:<mchid>:<id>` notification ids did: job id = WeChat's id alone. */
  legacyId?: boolean;
  eventType?: string;
  apiV3Key?: Buffer;
  /** APIv3 only: fields set over the generated resource (null included), as WeChat may send them. */
  fields?: Record<string, unknown>;
}

export function v3Payment(world: World, spec: PaymentSpec): ParseJobV3 {
  const amount = {
    total: spec.total ?? 100,
    payer_total: spec.total ?? 100,
    currency: spec.currency ?? "CNY",
    payer_currency: "CNY",
  };
  const base = {
    out_trade_no: spec.outTradeNo,
    transaction_id: spec.transactionId ?? `42000${randomBytes(10).toString("hex")}`,
    trade_type: "JSAPI",
    trade_state: spec.tradeState ?? "SUCCESS",
    trade_state_desc: "支付成功",
    bank_type: "OTHERS",
    success_time: "2026-11-30T10:34:56+08:00",
    amount,
  };
  const resource = spec.partner
    ? {
        ...base,
        sp_mchid: spec.mchid ?? world.merchant.mchid,
        sp_appid: spec.appid ?? world.merchant.appid,
        sub_mchid: spec.partner.subMchid,
        ...(spec.partner.subAppid ? { sub_appid: spec.partner.subAppid } : {}),
        payer: { sp_openid: "oSpPayer", sub_openid: "oSubPayer" },
      }
    : {
        ...base,
        mchid: spec.mchid ?? world.merchant.mchid,
        appid: spec.appid ?? world.merchant.appid,
        payer: { openid: "oPayerOpenid123" },
      };
  Object.assign(resource, spec.fields);
  return v3Job(world, spec.eventType ?? "TRANSACTION.SUCCESS", "transaction", resource, spec);
}

export interface RefundSpec {
  outTradeNo: string;
  transactionId: string;
  outRefundNo?: string;
  /** WeChat's refund id: the same for every delivery of one refund (random when omitted). */
  refundId?: string;
  refund: number;
  total: number;
  status?: "SUCCESS" | "ABNORMAL" | "CLOSED";
  mchid?: string;
  /** Service-provider mode: sp_mchid replaces mchid, and the sub-merchant is named (APIv3 `sub_mchid`, APIv2 outer `sub_mch_id`). */
  partner?: { subMchid: string };
  /** WeChat's envelope id (random when omitted). */
  id?: string;
  /** As in PaymentSpec. */
  legacyId?: boolean;
  /** The merchant's APIv3 key when it is not the world's (another tenant). */
  apiV3Key?: Buffer;
  /** APIv3 only: fields set over the generated resource (null included), as WeChat may send them. */
  fields?: Record<string, unknown>;
}

export function v3Refund(world: World, spec: RefundSpec): ParseJobV3 {
  const status = spec.status ?? "SUCCESS";
  const merchant = spec.partner
    ? { sp_mchid: spec.mchid ?? world.merchant.mchid, sub_mchid: spec.partner.subMchid }
    : { mchid: spec.mchid ?? world.merchant.mchid };
  const resource = {
    ...merchant,
    out_trade_no: spec.outTradeNo,
    transaction_id: spec.transactionId,
    out_refund_no: spec.outRefundNo ?? `R${randomBytes(6).toString("hex")}`,
    refund_id: spec.refundId ?? `50000${randomBytes(10).toString("hex")}`,
    refund_status: status,
    ...(status === "SUCCESS" ? { success_time: "2026-11-30T11:00:00+08:00" } : {}),
    user_received_account: "支付用户零钱",
    amount: { total: spec.total, refund: spec.refund, payer_total: spec.total, payer_refund: spec.refund },
  };
  Object.assign(resource, spec.fields);
  return v3Job(world, `REFUND.${status}`, "refund", resource, spec);
}

/**
 * The parse job the ingress enqueues for a notification the world's merchant's keys verified: id
 * `v3:<mchid>:<envelope id>` (an older ingress's: the envelope id alone, `legacyId`).
 */
function v3Job(
  world: World,
  eventType: string,
  originalType: string,
  resource: object,
  spec: { id?: string; legacyId?: boolean; apiV3Key?: Buffer },
): ParseJobV3 {
  const signed = createSignedV3Notification({
    id: spec.id ?? randomUUID(),
    eventType,
    originalType,
    resource,
    apiV3Key: spec.apiV3Key ?? Buffer.from(world.merchant.apiV3Key, "utf8"),
    privateKey: world.merchant.platformPrivateKey,
    serial: world.merchant.publicKeyId,
  });
  const h = signed.headers;
  return {
    v: 1,
    api: "v3",
    id: spec.legacyId ? signed.id : v3NotificationId(world.merchant.mchid, signed.id),
    mchid: world.merchant.mchid,
    receivedAt: Date.now(),
    headers: {
      timestamp: h["Wechatpay-Timestamp"] ?? "",
      nonce: h["Wechatpay-Nonce"] ?? "",
      serial: h["Wechatpay-Serial"] ?? "",
      signatureType: h["Wechatpay-Signature-Type"] ?? "",
    },
    body: signed.body.toString("utf8"),
  };
}

/** The payer openid of `v2Payment`'s notifications (`v3Payment`'s direct-merchant payer is "oPayerOpenid123"). */
export const V2_PAYER_OPENID = "oV2PayerOpenid";

export function v2Payment(
  world: World,
  spec: PaymentSpec & { resultCode?: string /** `yyyyMMddHHmmss`, China time. */; timeEnd?: string },
): ParseJobV2 {
  const transactionId = spec.transactionId ?? `42000${randomBytes(10).toString("hex")}`;
  const fields: Record<string, string> = {
    return_code: "SUCCESS",
    appid: spec.appid ?? world.merchant.appid,
    mch_id: spec.mchid ?? world.merchant.mchid,
    nonce_str: randomBytes(8).toString("hex"),
    result_code: spec.resultCode ?? "SUCCESS",
    openid: V2_PAYER_OPENID,
    trade_type: "JSAPI",
    bank_type: "CFT",
    total_fee: String(spec.total ?? 100),
    fee_type: spec.currency ?? "CNY",
    cash_fee: String(spec.total ?? 100),
    transaction_id: transactionId,
    out_trade_no: spec.outTradeNo,
    time_end: spec.timeEnd ?? "20261130103456",
  };
  if (spec.partner) {
    // Service-provider mode (protocol notes §2.1): appid/mch_id are the provider's; the sub-merchant fields are signed.
    fields.sub_mch_id = spec.partner.subMchid;
    if (spec.partner.subAppid) fields.sub_appid = spec.partner.subAppid;
  }
  fields.sign = signV2(fields, world.merchant.apiV2Key, "MD5");
  return {
    v: 1,
    api: "v2",
    id: `v2:pay:${world.merchant.mchid}.${transactionId}`,
    kind: "pay",
    mchid: world.merchant.mchid,
    receivedAt: Date.now(),
    body: buildV2Xml(fields),
  };
}

export function v2Refund(
  world: World,
  spec: Omit<RefundSpec, "status"> & {
    refundStatus?: "SUCCESS" | "CHANGE" | "REFUNDCLOSE";
    /** The outer (unsigned) return_code. */
    returnCode?: string;
    /** req_info's success_time (`yyyy-MM-dd HH:mm:ss`, China time); null leaves it out. */
    successTime?: string | null;
  },
): ParseJobV2 {
  const outRefundNo = spec.outRefundNo ?? `R${randomBytes(6).toString("hex")}`;
  const inner: Record<string, string> = {
    out_refund_no: outRefundNo,
    out_trade_no: spec.outTradeNo,
    refund_account: "REFUND_SOURCE_RECHARGE_FUNDS",
    refund_fee: String(spec.refund),
    refund_id: spec.refundId ?? `50000${randomBytes(10).toString("hex")}`,
    refund_recv_accout: "支付用户零钱",
    refund_request_source: "API",
    refund_status: spec.refundStatus ?? "SUCCESS",
    settlement_refund_fee: String(spec.refund),
    settlement_total_fee: String(spec.total),
    total_fee: String(spec.total),
    transaction_id: spec.transactionId,
  };
  if (spec.successTime !== null) inner.success_time = spec.successTime ?? "2026-11-30 11:00:00";
  const outer = {
    return_code: spec.returnCode ?? "SUCCESS",
    appid: world.merchant.appid,
    mch_id: spec.mchid ?? world.merchant.mchid,
    nonce_str: randomBytes(8).toString("hex"),
    // Service-provider mode: the sub-merchant is named outside req_info only, where nothing signs it.
    ...(spec.partner ? { sub_mch_id: spec.partner.subMchid } : {}),
    req_info: encryptV2ReqInfo(inner, world.merchant.apiV2Key),
  };
  return {
    v: 1,
    api: "v2",
    // As the ingress derives it (apps/ingress/src/routes/notify-v2.ts): the outer sub_mch_id last, in partner mode.
    id: `v2:refund:${world.merchant.mchid}.${inner.refund_id}.${inner.refund_status}${spec.partner ? `.${spec.partner.subMchid}` : ""}`,
    kind: "refund",
    mchid: world.merchant.mchid,
    receivedAt: Date.now(),
    body: buildV2Xml(outer),
  };
}

// ---------------------------------------------------------------- running the stages without BullMQ

export interface Inline {
  config: Config;
  /** Parse then apply, as the two queues would; returns both results (apply null when nothing was queued). */
  deliver(job: ParseJob): Promise<{ parse: ParseResult; apply: ApplyResult | null; applyJob: ApplyJob | null }>;
  parse(job: ParseJob): Promise<{ parse: ParseResult; applyJob: ApplyJob | null }>;
  /** `windowOver`: what the job's unknown-order window says (StageContext.windowOver); over unless told otherwise. */
  apply(job: ApplyJob, window?: { windowOver: boolean }): Promise<ApplyResult>;
  /** The events the apply stage published (as with PUBLISH_EVENTS=true), in order. */
  published: PublishEvent[];
}

/**
 * The parse and apply handlers wired to the world's database, called directly (no queue in between); the stages
 * log to `log` (silent unless a test reads the lines).
 */
export function inline(
  world: World,
  overrides: Record<string, string> = {},
  prisma: PrismaClient = world.prisma,
  log: Logger = quietLog,
): Inline {
  const config = world.config(overrides);
  const keys = new MerchantKeyResolver(config, prisma);
  const store = prismaApplyStore(prisma);
  // Payments are applied through the worker's group-commit batcher, as in the apply stage.
  const payments = new PaymentBatcher({
    payments: (facts) => store.payments(facts),
    maxBatchSize: 64,
    maxInFlight: 2,
  });
  const restockOnFullRefund = config.REFUND_RESTOCK_POLICY === "full";
  // Parse jobs are recorded through the worker's group-commit batcher; the apply jobs it would add to the
  // queue are kept here, by notification id, for the caller.
  const enqueued = new Map<string, ApplyJob>();
  const batcher = new ParseBatcher({
    upsert: (rows) => upsertParsedNotifications(prisma, rows),
    enqueueApply: async (jobs) => {
      for (const j of jobs) enqueued.set(j.notificationId, j);
    },
    maxBatchSize: 128,
    maxInFlight: 2,
  });
  const parse = async (job: ParseJob) => {
    const parsed = await handleParse(
      { prisma, keys, commit: (row, apply) => batcher.commit(row, apply) },
      job,
      testContext(log),
    );
    const applyJob = enqueued.get(job.id) ?? null;
    enqueued.delete(job.id);
    return { parse: parsed, applyJob };
  };
  const published: PublishEvent[] = [];
  const apply = (job: ApplyJob, window = { windowOver: true }) =>
    handleApply(
      {
        payment: (facts) => payments.apply(facts),
        refund: (facts) => store.refund(facts),
        keys,
        restockOnFullRefund,
        publish: async (event) => {
          published.push(event);
        },
      },
      job,
      testContext(log, window.windowOver),
    );
  return {
    config,
    parse,
    apply,
    published,
    async deliver(job) {
      const { parse: parsed, applyJob } = await parse(job);
      return { parse: parsed, applyJob, apply: applyJob ? await apply(applyJob) : null };
    },
  };
}
