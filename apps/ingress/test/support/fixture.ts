import type { KeyObject } from "node:crypto";
import { once } from "node:events";
import { type Config, loadConfig } from "@wpn/config";
import { createQueue, createRedisConnection, QueueName, type Receipt, readReceipt, v3NotificationId } from "@wpn/queue";
import { createTestMerchant, deletePrefix, TEST_REDIS_URL, type TestMerchant, testQueuePrefix } from "@wpn/testing";
import { createSignedV3Notification, type SignedV3Notification } from "@wpn/wechatpay";
import type { Queue } from "bullmq";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { buildApp, type IngressDeps } from "../../src/app.ts";
import { downloadObserver } from "../../src/merchants/certificate-download.ts";
import { defaultMerchantFromConfig, MerchantRegistry, type MerchantSource } from "../../src/merchants/registry.ts";
import { createMetrics } from "../../src/metrics.ts";
import { ingressSettings } from "../../src/settings.ts";
import { silentLogger } from "./logger.ts";

/** The APIv3 body of a 503 QUEUE_UNAVAILABLE (Redis down, not vouched for, or would not keep the job). */
export const V3_QUEUE_UNAVAILABLE = JSON.stringify({
  code: "FAIL",
  message: "QUEUE_UNAVAILABLE: queue unavailable, please resend",
});

export interface IngressFixture {
  merchant: TestMerchant;
  config: Config;
  prefix: string;
  app: FastifyInstance;
  /** The app's producer connection. */
  redis: Redis;
  /** A separate connection for assertions (BullMQ queue inspection, receipts). */
  admin: Redis;
  /** The parse queue seen through `admin`. */
  queue: Queue;
  merchants: MerchantRegistry;
  /** Number of `added` events in the parse queue's event stream: jobs ever created, even if since removed. */
  jobsEverAdded(): Promise<number>;
  receipt(id: string): Promise<Receipt | undefined>;
  close(): Promise<void>;
}

export interface FixtureOptions {
  label: string;
  /** Extra environment (e.g. INGRESS_ENQUEUE_TIMEOUT_MS); REDIS_URL defaults to the local Redis. */
  env?: Record<string, string>;
  merchant?: TestMerchant;
  source?: MerchantSource;
  registryClock?: () => number;
  /** Clock of the certificate-download throttles, the default merchant's and the source's (ms). */
  downloadClock?: () => number;
  app?: Partial<Omit<IngressDeps, "settings" | "redis" | "merchants">>;
  /**
   * The scheduled certificate downloads of every downloading merchant (the default one and `Merchant` rows), ms:
   * tests use a short period instead of WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS (at least a minute), and a short
   * first retry after a failure instead of the minute.
   */
  certificateRefresh?: { intervalMs: number; retryMs: number };
  /** Where the registry, the download observers and the app log; silent by default. */
  logger?: Logger;
  /**
   * false: the app is built but not readied (its sampler not started); the test calls `app.ready()` itself, e.g. after
   * stopping its Redis so that the first sample stays unanswered. Default true.
   */
  ready?: boolean;
}

/** The ingress as production builds it (real config parsing, real Redis), un-listened, with its own prefix. */
export async function createIngressFixture(options: FixtureOptions): Promise<IngressFixture> {
  const merchant = options.merchant ?? createTestMerchant();
  const prefix = testQueuePrefix(options.label);
  const config = loadConfig({ ...merchant.env, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: prefix, ...options.env });
  const redis = createRedisConnection(config.REDIS_URL, "producer");
  // A killed test-owned redis-server makes ioredis emit 'error' on every reconnect attempt; tests assert on answers.
  redis.on("error", () => undefined);
  await once(redis, "ready");
  const admin = createRedisConnection(config.REDIS_URL, "admin");
  admin.on("error", () => undefined);
  const metrics = options.app?.metrics ?? createMetrics();
  const logger = options.logger ?? silentLogger;
  const settings = {
    ...ingressSettings(config),
    ...(options.certificateRefresh ? { certificateRefreshIntervalMs: options.certificateRefresh.intervalMs } : {}),
  };
  const merchants = new MerchantRegistry({
    defaultMerchant: defaultMerchantFromConfig(config, {
      observer: downloadObserver(logger, metrics),
      ...(options.downloadClock ? { clock: options.downloadClock } : {}),
    }),
    ...(options.source ? { source: options.source } : {}),
    ...(options.registryClock ? { clock: options.registryClock } : {}),
    logger,
    download: {
      baseUrl: config.WECHATPAY_API_BASE_URL,
      toleranceSeconds: config.WECHATPAY_TIMESTAMP_TOLERANCE_SECONDS,
      observer: downloadObserver(logger, metrics),
      ...(options.downloadClock ? { clock: options.downloadClock } : {}),
      schedule: {
        intervalMs: settings.certificateRefreshIntervalMs,
        ...(options.certificateRefresh ? { retryMs: options.certificateRefresh.retryMs } : {}),
      },
    },
  });
  await merchants.start();
  const app = buildApp({
    settings,
    redis,
    merchants,
    logger,
    ...(options.certificateRefresh ? { certificateRetryMs: options.certificateRefresh.retryMs } : {}),
    ...options.app,
    metrics,
  });
  if (options.ready !== false) {
    await app.ready();
    // Notifications are refused until a sample has read Redis's eviction policy and role (QueueSampler.unkeptBecause):
    // the one readying started is answered in milliseconds, and this one comes after it.
    await app.ingress.sampler.sample();
  }
  const queue = createQueue(QueueName.Parse, admin, prefix);
  // Re-emitted connection errors while a test-owned redis-server is down; tests assert on answers instead.
  queue.on("error", () => undefined);
  return {
    merchant,
    config,
    prefix,
    app,
    redis,
    admin,
    queue,
    merchants,
    async jobsEverAdded() {
      const entries = await admin.xrange(`${prefix}:${QueueName.Parse}:events`, "-", "+");
      return entries.filter(([, fields]) => fields[0] === "event" && fields[1] === "added").length;
    },
    async receipt(id) {
      // Receipts are written right after the add is confirmed, without holding the answer back.
      await app.ingress.batcher.drain();
      return readReceipt(admin, prefix, id);
    },
    async close() {
      await app.close();
      merchants.stop();
      await queue.close();
      redis.disconnect();
      admin.disconnect();
      if (config.REDIS_URL === TEST_REDIS_URL) await deletePrefix(prefix);
    },
  };
}

/**
 * A correctly signed APIv3 payment notification for `merchant`, as WeChat would send it; `jobId` is its notification
 * id once that merchant's keys verified it (job id, receipt key), `id` WeChat's envelope id.
 */
export function signedV3(
  merchant: TestMerchant,
  options: { id?: string; now?: Date; probe?: boolean; serial?: string; privateKey?: KeyObject } = {},
): SignedV3Notification & { jobId: string } {
  const signed = createSignedV3Notification({
    ...(options.id === undefined ? {} : { id: options.id }),
    eventType: "TRANSACTION.SUCCESS",
    summary: "支付成功",
    originalType: "transaction",
    resource: {
      mchid: merchant.mchid,
      appid: merchant.appid,
      out_trade_no: `T${Date.now()}`,
      transaction_id: "4200000000000000000000000001",
      trade_type: "JSAPI",
      trade_state: "SUCCESS",
      amount: { total: 100, payer_total: 100, currency: "CNY", payer_currency: "CNY" },
      payer: { openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
    },
    apiV3Key: Buffer.from(merchant.apiV3Key, "utf8"),
    privateKey: options.privateKey ?? merchant.platformPrivateKey,
    serial: options.serial ?? merchant.publicKeyId,
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.probe === undefined ? {} : { probe: options.probe }),
  });
  return { ...signed, jobId: v3NotificationId(merchant.mchid, signed.id) };
}

/** `app.inject` for a notification (headers and exact body bytes). */
export function post(app: FastifyInstance, url: string, n: { headers: Record<string, string>; body: Buffer | string }) {
  return app.inject({ method: "POST", url, headers: n.headers, payload: n.body });
}
