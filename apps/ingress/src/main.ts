import { setTimeout as sleep } from "node:timers/promises";
import {
  APP_SHUTDOWN_DEADLINE_MS,
  listenFailure,
  loadConfigOrExit,
  reportStopSignal,
  stopWhenParentExits,
} from "@wpn/config";
import { createDb, verifyMigrationsOrExit } from "@wpn/db";
import { createRedisConnection } from "@wpn/queue";
import { buildApp, CLOSE_STEP_MS } from "./app.ts";
import { createLogger } from "./logger.ts";
import { downloadObserver } from "./merchants/certificate-download.ts";
import { prismaMerchantSource } from "./merchants/prisma-source.ts";
import { defaultMerchantFromConfig, type MerchantKeys, MerchantRegistry } from "./merchants/registry.ts";
import { createMetrics } from "./metrics.ts";
import { ingressSettings } from "./settings.ts";
import { within } from "./within.ts";

// The one process that verifies APIv3 signatures: it needs a key, certificates or certificate download.
const config = loadConfigOrExit(undefined, { verifiesApiV3Signatures: true });
const logger = createLogger(config.LOG_LEVEL);
stopWhenParentExits(logger);

// Taken from here on, not only once listening: a stop asked for during start-up's waits (the migration check, the
// merchant table) would otherwise kill the process on the signal (exit 143). It is held until the ingress listens,
// then stopped as any other (shutdown, below). Before this line — while the modules load — the signal still kills.
let stopRequested: "SIGTERM" | "SIGINT" | undefined;
let onStopSignal = (signal: "SIGTERM" | "SIGINT"): void => {
  stopRequested ??= signal;
};
for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => onStopSignal(signal));

const metrics = createMetrics();
let defaultMerchant: MerchantKeys;
try {
  // Parse the key material once; a wrong PEM (e.g. the merchant certificate instead of WeChat's public key)
  // must stop the process at start, not fail every notification.
  defaultMerchant = defaultMerchantFromConfig(config, { observer: downloadObserver(logger, metrics) });
} catch (error) {
  logger.fatal({ err: error }, "WeChat Pay key material could not be loaded");
  process.exit(78);
}

// The merchant registry reads the Merchant and PlatformCertificate tables: a database that answers without the
// committed migrations is a deployment mistake to stop at. One that cannot be reached is not: notifications only
// need Redis.
await verifyMigrationsOrExit(config.DATABASE_URL, logger, { connectTimeoutMs: 2_000 });

const redis = createRedisConnection(config.REDIS_URL, "producer");
let redisWasReady = false;
redis.on("ready", () => {
  redisWasReady = true;
  logger.info("redis connection ready");
});
redis.on("close", () => {
  if (redisWasReady)
    logger.warn({ code: "REDIS_DISCONNECTED" }, "redis connection closed; answering 503 until it is back");
  redisWasReady = false;
});
// ioredis emits 'error' on every failed reconnect attempt; the 'close' line above already reports the outage.
redis.on("error", (error) => logger.debug({ err: error }, "redis connection error"));

// Only the merchant registry uses PostgreSQL: a small pool, a short connect timeout, never on the request path.
const db = createDb({ url: config.DATABASE_URL, poolMax: 2, connectTimeoutMs: 2_000, applicationName: "wpn-ingress" });
const settings = ingressSettings(config);
const merchants = new MerchantRegistry({
  defaultMerchant,
  source: prismaMerchantSource(db.prisma),
  logger,
  download: {
    baseUrl: config.WECHATPAY_API_BASE_URL,
    toleranceSeconds: config.WECHATPAY_TIMESTAMP_TOLERANCE_SECONDS,
    observer: downloadObserver(logger, metrics),
    // The rows' merchants download on the default merchant's schedule (app.ts): one setting for all.
    schedule: { intervalMs: settings.certificateRefreshIntervalMs },
  },
});
await merchants.start();

const app = buildApp({ settings, redis, merchants, logger, metrics });
try {
  await app.listen({ host: config.HOST, port: config.PORT });
} catch (error) {
  const failure = listenFailure(error, { host: config.HOST, port: config.PORT, portSetting: "PORT" });
  if (failure === undefined) throw error;
  logger.fatal(failure.fields, failure.message);
  // Nothing was accepted: close what start-up opened, then exit as for any other configuration fault.
  await app.close().catch(() => undefined);
  merchants.stop();
  redis.disconnect();
  await db.close().catch(() => undefined);
  process.exit(78);
}
logger.info(
  {
    host: config.HOST,
    port: config.PORT,
    merchants: merchants.size,
    merchantsLoaded: merchants.tableLoaded,
    keys: defaultMerchant.keys.describe().length,
    certificateDownload: defaultMerchant.certificateRefresher !== undefined,
  },
  "ingress listening",
);

let shuttingDown = false;
async function shutdown(signal: "SIGTERM" | "SIGINT"): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  reportStopSignal(signal, logger);
  const drainMs = config.INGRESS_SHUTDOWN_DRAIN_MS;
  logger.info({ signal, drainMs }, "shutting down: draining in-flight notifications");
  const deadline = setTimeout(() => {
    logger.error({ deadlineMs: APP_SHUTDOWN_DEADLINE_MS }, "shutdown deadline passed; exiting");
    process.exit(1);
  }, APP_SHUTDOWN_DEADLINE_MS);
  deadline.unref();
  // Lame duck for drainMs: still serving, readiness 503 and `Connection: close` on every answer, so the balancer
  // stops choosing this process and its clients leave their kept-alive connections before closing shuts the idle
  // ones (a request written on one at that moment is cut off). The schema bounds drainMs so that it and the closing
  // below fit within the deadline (INGRESS_SHUTDOWN_DRAIN_MAX_MS of @wpn/config).
  app.ingress.startDraining();
  if (drainMs > 0) await sleep(drainMs);
  // Stops accepting, waits for in-flight requests (each answered only after its enqueue settled), then
  // drains the batcher and closes the queue (onClose hook).
  await app.close();
  merchants.stop();
  // quit() is refused at once on a connection that is down (no offline queue) and never answered by a Redis that
  // hangs: after CLOSE_STEP_MS (a second) the connection is just dropped.
  const quit = redis.quit().then(
    () => true,
    (error: unknown) => {
      logger.debug({ err: error }, "redis refused quit");
      return false;
    },
  );
  if ((await within(quit, CLOSE_STEP_MS)) !== true) redis.disconnect();
  await db.close();
  logger.info("shutdown complete");
  process.exit(0);
}
onStopSignal = (signal) => {
  shutdown(signal).catch((error: unknown) => {
    logger.error({ err: error }, "shutdown failed");
    process.exit(1);
  });
};
if (stopRequested !== undefined) onStopSignal(stopRequested);
