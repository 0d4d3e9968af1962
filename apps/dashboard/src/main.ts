// Dashboard entry point: configuration, PostgreSQL, an admin Redis connection, listen; graceful shutdown on
// SIGTERM/SIGINT (stop accepting, finish in-flight requests, close pools).
import {
  APP_SHUTDOWN_DEADLINE_MS,
  ConfigError,
  listenFailure,
  loadConfigOrExit,
  reportStopSignal,
  stopWhenParentExits,
} from "@wpn/config";
import { verifyMigrationsOrExit } from "@wpn/db";
import { createRedisConnection } from "@wpn/queue";
import { pino } from "pino";
import { buildApp } from "./app.ts";
import { openDashboardDb } from "./database.ts";
import { dashboardLoggerOptions } from "./log-options.ts";

const config = loadConfigOrExit();
const logger = pino(dashboardLoggerOptions(config.LOG_LEVEL));
stopWhenParentExits(logger);

// Every business page reads tables of the committed migrations.
await verifyMigrationsOrExit(config.DATABASE_URL, logger, { connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS });

const db = openDashboardDb(config);
const redis = createRedisConnection(config.REDIS_URL, "admin");
let lastRedisError = 0;
redis.on("error", (error: Error) => {
  // ioredis repeats the error on every reconnect attempt; once every 10 s is enough to see an outage.
  if (Date.now() - lastRedisError > 10_000) {
    lastRedisError = Date.now();
    logger.warn({ err: error }, "Redis connection error (reconnecting)");
  }
});

let app: Awaited<ReturnType<typeof buildApp>>;
try {
  app = await buildApp({ config, db, redis, logger });
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`);
    process.exit(78);
  }
  throw error;
}

let stopping = false;
async function shutdown(signal: "SIGTERM" | "SIGINT"): Promise<void> {
  if (stopping) return;
  stopping = true;
  reportStopSignal(signal, logger);
  logger.info({ signal }, "shutting down");
  const force = setTimeout(() => {
    logger.error("shutdown timed out; exiting");
    process.exit(1);
  }, APP_SHUTDOWN_DEADLINE_MS);
  force.unref();
  try {
    await app.close();
    await db.close();
    await redis.quit().catch(() => redis.disconnect());
    process.exit(0);
  } catch (error) {
    logger.error({ err: error }, "error during shutdown");
    process.exit(1);
  }
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

try {
  await app.listen({ host: config.HOST, port: config.DASHBOARD_PORT });
} catch (error) {
  const failure = listenFailure(error, {
    host: config.HOST,
    port: config.DASHBOARD_PORT,
    portSetting: "DASHBOARD_PORT",
  });
  if (failure === undefined) logger.fatal({ err: error }, "cannot listen");
  else logger.fatal(failure.fields, failure.message);
  await app.close().catch(() => undefined);
  await db.close().catch(() => undefined);
  redis.disconnect();
  // A port in use or an address this machine lacks is configuration: EX_CONFIG, as for any other setting.
  process.exit(failure === undefined ? 1 : 78);
}
