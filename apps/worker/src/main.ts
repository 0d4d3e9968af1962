// Entry point of one worker process: `tsx apps/worker/src/main.ts`. The root start script runs it
// WORKER_PROCESSES times with WORKER_INDEX=0..n-1 (each then serves health on WORKER_HEALTH_PORT + index).
import { listenFailure, loadConfigOrExit, reportStopSignal, stopWhenParentExits } from "@wpn/config";
import { waitForMigrationsOrExit } from "@wpn/db";
import { oneLine } from "./errors.ts";
import { startHealthServer } from "./health.ts";
import { createLogger } from "./logger.ts";
import { WorkerMetrics } from "./metrics.ts";
import { checkWorkerConfig, healthPortOf, startWorker, type WorkerHandle } from "./worker.ts";

const config = loadConfigOrExit();
const problem = checkWorkerConfig(config);
if (problem !== null) {
  process.stderr.write(`configuration error: ${problem}\n`);
  process.exit(78);
}
const log = createLogger(config.LOG_LEVEL, { workerIndex: config.WORKER_INDEX });
stopWhenParentExits(log);

process.on("unhandledRejection", (reason) => {
  log.fatal({ code: "UNHANDLED_REJECTION", err: oneLine(reason) }, "unhandled rejection");
  process.exit(1);
});

let worker: WorkerHandle | null = null;
let stopping = false;
const waiting = new AbortController();
function stop(signal: "SIGTERM" | "SIGINT"): void {
  if (stopping) return;
  stopping = true;
  reportStopSignal(signal, log);
  log.info({ signal }, "shutting down");
  // Still waiting for PostgreSQL: no job was taken, nothing to finish (the wait then exits 0).
  if (worker === null) waiting.abort();
  else close(worker);
}
/** Closes gracefully, then exits with `exitCode` (1 for a failure a restart should cure). */
function close(handle: WorkerHandle, exitCode = 0): void {
  handle.close().then(
    () => process.exit(exitCode),
    (error: unknown) => {
      log.error({ code: "SHUTDOWN_FAILED", err: oneLine(error) }, "shutdown failed");
      process.exit(1);
    },
  );
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

/**
 * The health server's address is configuration: a port in use or an address this machine lacks is LISTEN_FAILED and
 * exit 78; anything else is thrown on. Both servers listen there: the one of the wait for PostgreSQL, then
 * startWorker's, which has closed what it opened by then.
 */
function exitIfCannotListen(error: unknown): never {
  const portSetting =
    config.WORKER_INDEX === 0 ? "WORKER_HEALTH_PORT" : `WORKER_HEALTH_PORT (+ WORKER_INDEX ${config.WORKER_INDEX})`;
  const failure = listenFailure(error, { host: config.HOST, port: healthPortOf(config), portSetting });
  if (failure === undefined) throw error;
  log.fatal(failure.fields, failure.message);
  process.exit(78);
}

// Before taking any job, PostgreSQL must answer with the committed migrations: on a database without them every
// job would fail and be retried into the dead letters, and while it cannot be reached every job would fail and use an
// attempt. Meanwhile the health server answers live but not ready, and wpn_worker_db_paused is 1.
const metrics = new WorkerMetrics();
metrics.dbPaused.set(1);
// Not counted while PostgreSQL is awaited (-1, as a scrape it does not answer): 0 would say no stored event waits.
// startWorker sets the real count.
metrics.readPublishOverflowRows(async () => null);
const waitingHealth = await startHealthServer({
  host: config.HOST,
  port: healthPortOf(config),
  registry: metrics.registry,
  readiness: async () => ({ ready: false, checks: { workers: "not started: waiting for PostgreSQL to answer" } }),
}).catch(exitIfCannotListen);
const checked = await waitForMigrationsOrExit(config.DATABASE_URL, log, {
  connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS,
  signal: waiting.signal,
});
await waitingHealth.close();
metrics.dbPaused.set(0);
if (!checked) process.exit(0);
// A stage whose main loop died takes no job again: close (the other stage's running jobs finish) and exit 1, so that
// the supervisor (Compose's restart policy, an orchestrator) restarts the process — under `npm start`, scripts/start.ts
// stops the whole system instead and exits 1. It may be reported before startWorker has returned the handle.
let runFailed = false;
function restart(handle: WorkerHandle): void {
  if (stopping) return;
  stopping = true;
  close(handle, 1);
}
worker = await startWorker(config, {
  logger: log,
  metrics,
  onRunFailed: () => {
    runFailed = true;
    if (worker !== null) restart(worker);
  },
}).catch(exitIfCannotListen);
if (stopping) close(worker);
else if (runFailed) restart(worker);
