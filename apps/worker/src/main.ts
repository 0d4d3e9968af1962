// Entry point of one worker process: `tsx apps/worker/src/main.ts`. The root start script runs it
// WORKER_PROCESSES times with WORKER_INDEX=0..n-1 (each then serves health on WORKER_HEALTH_PORT + index).
import { loadConfigOrExit, readEnvironment } from "@wpn/config";
import { verifyMigrationsOrExit } from "@wpn/db";
import { oneLine } from "./errors.ts";
import { createLogger } from "./logger.ts";
import { checkWorkerConfig, startWorker } from "./worker.ts";

const config = loadConfigOrExit(readEnvironment());
const problem = checkWorkerConfig(config);
if (problem !== null) {
  process.stderr.write(`configuration error: ${problem}\n`);
  process.exit(78);
}
const log = createLogger(config.LOG_LEVEL, { workerIndex: config.WORKER_INDEX });

process.on("unhandledRejection", (reason) => {
  log.fatal({ code: "UNHANDLED_REJECTION", err: oneLine(reason) }, "unhandled rejection");
  process.exit(1);
});

// Before taking any job: on a database without the committed migrations every job would fail and be retried
// into the dead letters.
await verifyMigrationsOrExit(config.DATABASE_URL, log, { connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS });
const worker = await startWorker(config, { logger: log });

let stopping = false;
function stop(signal: NodeJS.Signals): void {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  worker.close().then(
    () => process.exit(0),
    (error: unknown) => {
      log.error({ code: "SHUTDOWN_FAILED", err: oneLine(error) }, "shutdown failed");
      process.exit(1);
    },
  );
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
