import { hostname } from "node:os";
import { type Config, WORKER_CLOSE_STEP_MS } from "@wpn/config";
import { countOverflowEvents, createDb, type Db, probeDatabase, upsertParsedNotifications } from "@wpn/db";
import { createCeilingAdder, createQueue, createRedisConnection, QueueName } from "@wpn/queue";
import type { BackoffStrategy, Job, Queue, WorkerOptions } from "bullmq";
import type { Logger } from "pino";
import { DatabaseOutage, outageEndedKey } from "./db-outage.ts";
import { type ApplyStore, prismaApplyStore } from "./domain/store.ts";
import { oneLine, WorkerError } from "./errors.ts";
import { firstRunOf, knownFirstRun } from "./first-run.ts";
import { type HealthServer, type ReadinessReport, startHealthServer, withTimeout } from "./health.ts";
import { MerchantKeyResolver } from "./keys.ts";
import { type LetterInFlight, LettersInFlight } from "./letters-in-flight.ts";
import { isLockLost } from "./lock-lost.ts";
import { createLogger } from "./logger.ts";
import { PUBLISH_JOB_STATES, WorkerMetrics } from "./metrics.ts";
import { PublishRelay } from "./publish-relay.ts";
import { isRedisUnavailable, RedisOutageLog } from "./redis-outage.ts";
import { WatchedWorker } from "./watched-worker.ts";
import { WorkerErrorLog } from "./worker-error-log.ts";
import { applyStage } from "./workers/apply.processor.ts";
import { PaymentBatcher } from "./workers/apply-batch.ts";
import { parseStage } from "./workers/parse.processor.ts";
import { applyEnqueuer, ParseBatcher } from "./workers/parse-batch.ts";
import { eventPublisher } from "./workers/publisher.ts";
import {
  backoffDelay,
  createStageProcessor,
  DeadLetteredError,
  deadLetter,
  outTradeNoOfData,
  plannedRetryDelay,
  type StageRuntime,
  windowEnd,
} from "./workers/stage.ts";

export interface StartWorkerOptions {
  logger?: Logger;
  /** Replaces the Prisma store (the benchmark's raw-pg baseline). */
  applyStore?: (db: Db) => ApplyStore;
  /** Overrides WORKER_HEALTH_PORT + WORKER_INDEX (tests pass 0). */
  healthPort?: number;
  /** The process's metrics when they were served before the start (main.ts's wait for PostgreSQL). */
  metrics?: WorkerMetrics;
  /**
   * Called once when a BullMQ Worker's main loop stopped with an error (WORKER_RUN_FAILED): its stage takes no more
   * jobs, so the process must be restarted (main.ts closes it and exits 1). /health/live answers 503 from then on.
   */
  onRunFailed?: (error: unknown) => void;
}

export interface WorkerHandle {
  readonly healthPort: number;
  readonly metrics: WorkerMetrics;
  readonly db: Db;
  /**
   * Graceful stop: readiness fails, no new jobs are taken, running jobs get WORKER_SHUTDOWN_TIMEOUT_MS to
   * finish; after that they are abandoned (the Redis connection is dropped, their locks lapse and another worker
   * re-runs them, harmlessly), then connections close, each within a second.
   */
  close(): Promise<void>;
}

/**
 * Parse batches in flight at once per process (each holds a pooled connection for its statement). Two: one
 * batch's statement runs while the other's apply jobs are added, and commits arriving meanwhile gather into
 * the next batch.
 */
const PARSE_BATCH_MAX_IN_FLIGHT = 2;
/** Largest parse batch: bounds one statement's parameter (each row carries its raw body, ~1–2 KiB). */
const PARSE_BATCH_MAX_SIZE = 128;
/**
 * Payment batches in flight at once per process (each holds a pooled connection for its statement). Two: a
 * batch can be sent while the previous one's answer is still on its way back, so PostgreSQL does not sit idle
 * for a round trip per batch; payments arriving while both run gather into the next batch.
 */
const PAYMENT_BATCH_MAX_IN_FLIGHT = 2;
/**
 * Largest payment batch: bounds how many orders and SKUs one statement locks, i.e. how long a concurrent
 * statement on one of them (another process's batch, a refund) may wait.
 */
const PAYMENT_BATCH_MAX_SIZE = 64;
/** Pooled connections the batches of one process hold at most at once: one per parse or payment batch in flight. */
const BATCH_CONNECTIONS = PARSE_BATCH_MAX_IN_FLIGHT + PAYMENT_BATCH_MAX_IN_FLIGHT;

/**
 * Settings that are wrong together; returns the message of the first problem, or null.
 *
 * Jobs do not hold a pooled connection each: parse rows and payments are committed in batches, each batch
 * holding one connection for its statement, so the pool must hold the batches' connections (fewer would make
 * the stages' batches wait for each other). WORKER_CONCURRENCY is not tied to the pool: payment jobs only
 * wait for their batch, and refund jobs (one statement each, a few ms) beyond the free connections wait in the
 * pool's queue, for at most PG_CONNECT_TIMEOUT_MS.
 */
export function checkWorkerConfig(config: Config): string | null {
  if (config.PG_POOL_MAX < BATCH_CONNECTIONS) {
    return `PG_POOL_MAX (${config.PG_POOL_MAX}) must be at least ${BATCH_CONNECTIONS}: up to ${PARSE_BATCH_MAX_IN_FLIGHT} parse and ${PAYMENT_BATCH_MAX_IN_FLIGHT} payment batches are in flight, each holding a pooled connection for its statement`;
  }
  if (config.WORKER_HEALTH_PORT !== 0 && config.WORKER_HEALTH_PORT + config.WORKER_INDEX > 65_535) {
    return `WORKER_HEALTH_PORT + WORKER_INDEX (${config.WORKER_HEALTH_PORT + config.WORKER_INDEX}) is not a port`;
  }
  return null;
}

/**
 * Starts one worker process's share of the pipeline: a `notify.parse` BullMQ worker with
 * WORKER_PARSE_CONCURRENCY jobs at once, recorded together in batches (ParseBatcher: one statement and one
 * apply enqueue per batch), and a `notify.apply` worker with WORKER_CONCURRENCY jobs at once, whose payments
 * are applied together in batches (PaymentBatcher: one statement per batch) and whose refunds run one short
 * statement each, plus the health/metrics server. Scale out by running more processes, on any number of
 * machines: nothing here is shared between processes except Redis and PostgreSQL.
 */
export async function startWorker(config: Config, options: StartWorkerOptions = {}): Promise<WorkerHandle> {
  const log = options.logger ?? createLogger(config.LOG_LEVEL, { workerIndex: config.WORKER_INDEX });
  const metrics = options.metrics ?? new WorkerMetrics();
  const prefix = config.QUEUE_PREFIX;
  const db = createDb({
    url: config.DATABASE_URL,
    poolMax: config.PG_POOL_MAX,
    connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS,
    applicationName: `wpn-worker-${config.WORKER_INDEX}`,
    // The worker runs a handful of statement shapes thousands of times a second: plan each once per connection.
    preparedStatements: true,
  });
  const redis = createRedisConnection(config.REDIS_URL, "worker");
  // One log of an outage for the connection and the Workers' own: each reports every reconnect attempt.
  const redisOutage = new RedisOutageLog({ log, metrics, redis });
  redis.on("error", (error: Error) => redisOutage.failed("connection", error));

  const applyQueue = createQueue(QueueName.Apply, redis, prefix);
  const deadQueue = createQueue(QueueName.Dead, redis, prefix);
  const publishQueue = config.PUBLISH_EVENTS ? createQueue(QueueName.Publish, redis, prefix) : null;
  const publishAdder = publishQueue ? createCeilingAdder(publishQueue, redis) : null;
  const queues: Queue[] = [applyQueue, deadQueue, ...(publishQueue ? [publishQueue] : [])];
  // Each Queue re-emits its connection's errors, and BullMQ prints an unheard one to stderr: a multi-line dump per queue
  // and reconnect attempt, outside the JSON log (no code, no redaction). The connection's listener above reports them.
  for (const queue of queues) {
    queue.on("error", (error: Error) =>
      log.debug({ queue: queue.name, err: oneLine(error) }, "queue connection error"),
    );
  }
  if (publishQueue) {
    metrics.readPublishJobs(async () => {
      try {
        return await withTimeout(
          publishQueue.getJobCounts(...PUBLISH_JOB_STATES),
          PUBLISH_JOBS_READ_MS,
          `no answer within ${PUBLISH_JOBS_READ_MS} ms`,
        );
      } catch (error) {
        // The scrape goes on with -1 for these counts; the rest of /metrics does not wait for Redis.
        log.warn({ code: "PUBLISH_JOBS_UNREAD", err: oneLine(error) }, "notify.publish counts not read");
        return null;
      }
    });
  }
  // Counted with PUBLISH_EVENTS=false too: stored events then wait with no relay to move them (the feature dropped
  // with rows left), and a gauge reading 0 would hide exactly those.
  metrics.readPublishOverflowRows(async () => {
    try {
      return await withTimeout(
        countOverflowEvents(db.prisma, PUBLISH_JOBS_READ_MS),
        PUBLISH_JOBS_READ_MS,
        `no answer within ${PUBLISH_JOBS_READ_MS} ms`,
      );
    } catch (error) {
      log.warn({ code: "PUBLISH_OVERFLOW_UNREAD", err: oneLine(error) }, "PublishOverflow rows not counted");
      return null;
    }
  });
  const relay = publishAdder
    ? new PublishRelay({
        prisma: db.prisma,
        adder: publishAdder,
        maxWaiting: config.PUBLISH_MAX_WAITING,
        log,
        metrics,
        batchSize: PUBLISH_RELAY_BATCH_SIZE,
        intervalMs: PUBLISH_RELAY_INTERVAL_MS,
      })
    : null;

  const windowMs = config.WORKER_UNKNOWN_ORDER_RETRY_SECONDS * 1000;
  const outage: DatabaseOutage = new DatabaseOutage({
    probe: () => probeDatabase(db.target, PROBE_TIMEOUT_MS),
    consumers: () => workers.map((w) => w.worker),
    log,
    metrics,
    redis,
    maxPauses: config.WORKER_DB_OUTAGE_MAX_PAUSES,
    endedKey: outageEndedKey(prefix),
  });
  const runtime: StageRuntime = {
    log,
    metrics,
    prisma: db.prisma,
    deadQueue,
    windowMs,
    outage,
    firstRun: (job) => firstRunOf(redis, job),
  };
  const keys = new MerchantKeyResolver(config, db.prisma);

  const parseBatcher = new ParseBatcher({
    upsert: (rows) => upsertParsedNotifications(db.prisma, rows),
    enqueueApply: applyEnqueuer(applyQueue, redis),
    maxBatchSize: PARSE_BATCH_MAX_SIZE,
    maxInFlight: PARSE_BATCH_MAX_IN_FLIGHT,
    onFlush: (size) => metrics.parseBatchSize.observe(size),
  });
  const parse = parseStage({ prisma: db.prisma, keys, commit: (row, job) => parseBatcher.commit(row, job) });
  const store = options.applyStore ? options.applyStore(db) : prismaApplyStore(db.prisma);
  const paymentBatcher = new PaymentBatcher({
    payments: (facts) => store.payments(facts),
    maxBatchSize: PAYMENT_BATCH_MAX_SIZE,
    maxInFlight: PAYMENT_BATCH_MAX_IN_FLIGHT,
    onFlush: (size) => metrics.applyBatchSize.observe(size),
  });
  const apply = applyStage({
    payment: (facts) => paymentBatcher.apply(facts),
    refund: (facts) => store.refund(facts),
    keys,
    restockOnFullRefund: config.REFUND_RESTOCK_POLICY === "full",
    metrics,
    ...(publishAdder
      ? {
          publish: eventPublisher({
            adder: publishAdder,
            maxWaiting: config.PUBLISH_MAX_WAITING,
            prisma: db.prisma,
            log,
            metrics,
          }),
        }
      : {}),
  });

  const common: WorkerOptions = {
    connection: redis,
    prefix,
    concurrency: config.WORKER_CONCURRENCY,
    lockDuration: config.WORKER_LOCK_DURATION_MS,
    stalledInterval: config.WORKER_STALLED_INTERVAL_MS,
    maxStalledCount: config.WORKER_MAX_STALLED_COUNT,
    name: `${hostname()}:${process.pid}`,
  };
  /** Set when a Worker's main loop died: the stage takes no jobs, and only a restart brings it back. */
  let runFailure: string | null = null;
  /** Every run() of the stage's Worker ends here when it fails: startWorker's below, and the ones resume() starts. */
  const runFailed = (stage: QueueName) => (error: unknown) => {
    log.fatal({ queue: stage, code: "WORKER_RUN_FAILED", err: oneLine(error) }, "worker stopped");
    if (runFailure !== null) return;
    runFailure = `${stage} worker stopped: ${oneLine(error)}`;
    options.onRunFailed?.(error);
  };
  const parseWorker = new WatchedWorker(
    QueueName.Parse,
    createStageProcessor(parse, runtime),
    { ...common, concurrency: config.WORKER_PARSE_CONCURRENCY },
    runFailed(QueueName.Parse),
  );
  const applyWorker = new WatchedWorker(
    QueueName.Apply,
    createStageProcessor(apply, runtime),
    { ...common, settings: { backoffStrategy: windowBackoff(windowMs, () => outage.endedAt) } },
    runFailed(QueueName.Apply),
  );
  const workers = [
    {
      worker: parseWorker,
      stage: QueueName.Parse,
      idField: "id",
      outTradeNoOf: (d: unknown) => outTradeNoOfData(parse, d),
    },
    {
      worker: applyWorker,
      stage: QueueName.Apply,
      idField: "notificationId",
      outTradeNoOf: (d: unknown) => outTradeNoOfData(apply, d),
    },
  ] as const;

  const lettersInFlight = new LettersInFlight({ log, metrics });
  const workerErrors = new WorkerErrorLog(log, metrics);
  for (const { worker, stage, idField, outTradeNoOf } of workers) {
    worker.on("error", (error) => {
      if (isRedisUnavailable(error)) {
        redisOutage.failed(stage, error);
        return;
      }
      if (!isLockLost(error)) {
        workerErrors.failed(stage, error);
        return;
      }
      metrics.locksLost.inc({ queue: stage });
      log.warn(
        { queue: stage, code: "JOB_LOCK_LOST", err: oneLine(error) },
        "job lock lost; another run of the job takes over",
      );
    });
    // BullMQ reports a stall before it decides: a job past WORKER_MAX_STALLED_COUNT is failed instead of re-run,
    // and dead-lettered below (JOB_STALLED_TOO_OFTEN), so this line must not promise another run.
    worker.on("stalled", (jobId) =>
      log.warn(
        { queue: stage, jobId, code: "JOB_STALLED" },
        "job stalled (its worker stopped renewing the lock); it runs again, or is dead-lettered as JOB_STALLED_TOO_OFTEN past WORKER_MAX_STALLED_COUNT",
      ),
    );
    // The processor dead-letters every failure it sees. A job can also fail without it: stalled more than
    // WORKER_MAX_STALLED_COUNT times (its workers kept dying), or the processor's own dead-lettering failed on
    // the last attempt. Those are dead-lettered here (the letter's job id makes a repeat harmless).
    worker.on("failed", (job, error) => {
      if (!job || error instanceof DeadLetteredError || error instanceof WorkerError) return;
      // An attempt BullMQ retries is not the end of the job: the processor dead-letters it on its last one.
      const stalledTooOften = /stalled/i.test(error.message);
      if (!stalledTooOften && job.attemptsMade < (job.opts.attempts ?? 1)) return;
      const notificationId = typeof job.data?.[idField] === "string" ? (job.data[idField] as string) : null;
      const code = stalledTooOften ? "JOB_STALLED_TOO_OFTEN" : "JOB_FAILED";
      const letter: LetterInFlight = { queue: stage, jobId: job.id ?? "unknown", notificationId, written: false };
      // As the processor's lines and letters have them: the attempt BullMQ failed, the order number of the payload
      // (nothing here opens the notification: its sub-merchant and refund number are not known).
      // BullMQ has counted that attempt in attemptsMade already, where deadLetter counts the one running (+ 1).
      const outTradeNo = outTradeNoOf(job.data);
      const failed = {
        id: job.id,
        name: job.name,
        data: job.data,
        timestamp: job.timestamp,
        attemptsMade: Math.max(0, job.attemptsMade - 1),
      };
      const failure = {
        notificationId,
        keys: { outTradeNo, subMchid: null, outRefundNo: null },
        log: log.child({ queue: stage, jobId: job.id, attempt: failed.attemptsMade + 1, notificationId, outTradeNo }),
        onLetterWritten: () => {
          letter.written = true;
        },
      };
      lettersInFlight.track(letter, deadLetter(runtime, stage, failed, { code, message: oneLine(error) }, failure));
    });
  }

  let closing = false;
  // A connection that is up is not a Redis that takes writes: past maxmemory under noeviction (OOM), a demoted primary
  // (READONLY) or a failed RDB save (MISCONF) answers reads and refuses every job move and outcome, so the probe writes
  // (a key per deployment, expiring: nothing stays behind), as the ingress's readiness does.
  const writeProbeKey = `${prefix}:worker:write-probe`;
  const readiness = async (): Promise<ReadinessReport> => {
    const checks: Record<string, string> = {};
    checks.workers = closing
      ? "shutting down"
      : outage.paused
        ? "paused: PostgreSQL does not answer"
        : workers.every((w) => w.worker.isRunning())
          ? "ok"
          : "not running";
    const [redisCheck, postgresCheck] = await Promise.all([
      redis.status === "ready"
        ? answersOk(redis.set(writeProbeKey, "1", "PX", WRITE_PROBE_TTL_MS), "no answer to a write within 1 s")
        : `connection ${redis.status}`,
      answersOk(db.pool.query("SELECT 1"), "no answer within 1 s"),
    ]);
    checks.redis = redisCheck;
    checks.postgres = postgresCheck;
    return { ready: Object.values(checks).every((c) => c === "ok"), checks };
  };
  let health: HealthServer;
  try {
    health = await startHealthServer({
      host: config.HOST,
      port: options.healthPort ?? healthPortOf(config),
      registry: metrics.registry,
      readiness,
      liveness: () => runFailure,
    });
  } catch (error) {
    // Cannot listen (main.ts reports it, LISTEN_FAILED): no Worker ran yet, so nothing is to finish; what this opened
    // is closed, so that the caller's exit leaves no connection behind.
    outage.close();
    redisOutage.close();
    await Promise.all([...workers.map((w) => w.worker.close()), ...queues.map((q) => q.close())]);
    redis.disconnect();
    await db.close();
    throw error;
  }

  // A failure of the loop goes to runFailed (WatchedWorker); it resolves when the loop ends (a pause, close()).
  for (const { worker } of workers) void worker.run();
  relay?.start();
  log.info(
    {
      healthPort: health.port,
      concurrency: config.WORKER_CONCURRENCY,
      parseConcurrency: config.WORKER_PARSE_CONCURRENCY,
      prefix,
      publish: config.PUBLISH_EVENTS,
      publishMaxWaiting: config.PUBLISH_MAX_WAITING,
    },
    "worker started",
  );

  return {
    healthPort: health.port,
    metrics,
    db,
    async close() {
      if (closing) return;
      closing = true;
      // Paused Workers close like running ones (no job is taken; the ones still running get the grace below).
      outage.close();
      redisOutage.close();
      // No pass starts from now on, whichever way the close goes (a grace that runs out skips the steps below): one
      // every second on the closed pool would fail until the process exits, forever for a process that embeds it.
      const relayClosed = relay?.close() ?? Promise.resolve();
      const started = Date.now();
      /** Each closing step after the jobs' grace gets a bounded wait: a hanging one is logged, not waited for. */
      const step = (what: string, promise: Promise<unknown>) =>
        withTimeout(promise, WORKER_CLOSE_STEP_MS, `${what} did not close within ${WORKER_CLOSE_STEP_MS} ms`).catch(
          (error: unknown) => log.warn({ code: "SHUTDOWN_STEP_TIMEOUT", err: oneLine(error) }, "closing went on"),
        );
      try {
        await withTimeout(
          (async () => {
            await Promise.all(workers.map((w) => w.worker.close()));
            // After the Workers: a stalled check running until their close may have failed a job and begun its letter.
            await lettersInFlight.settled();
          })(),
          config.WORKER_SHUTDOWN_TIMEOUT_MS,
          `the Workers did not close within ${config.WORKER_SHUTDOWN_TIMEOUT_MS} ms`,
        );
        // A pass running commits or rolls back before Redis and PostgreSQL close: its rows stay or are deleted whole.
        await step("publish relay", relayClosed);
        await step("queues", Promise.all(queues.map((q) => q.close())));
        await step("redis", redis.quit());
      } catch (error) {
        // Abandoned: BullMQ's close(true) cannot help once close() runs (it answers the same, still waiting,
        // promise), so the connection goes: the jobs' locks are no longer renewed, lapse, and another worker re-runs
        // them. A statement still running may yet commit (PostgreSQL finishes it although the process exits): the
        // re-run then answers ALREADY — effects are idempotent either way.
        const runningJobs = workers.reduce((sum, w) => sum + w.worker.runningJobs, 0);
        log.warn(
          { code: "SHUTDOWN_TIMEOUT", err: oneLine(error), runningJobs },
          runningJobs > 0
            ? "abandoning running jobs"
            : "no job was running: closing without waiting any longer for Redis (or a dead letter being written)",
        );
        lettersInFlight.reportCut(config.WORKER_SHUTDOWN_TIMEOUT_MS);
        redis.disconnect();
      }
      // pg's end() waits for connections still in a statement: bounded like the rest.
      await step("postgres", db.close());
      await step("health server", health.close());
      log.info({ ms: Date.now() - started }, "worker stopped");
    },
  };
}

/** The health server's port: WORKER_HEALTH_PORT + WORKER_INDEX, or 0 (any free port) when WORKER_HEALTH_PORT is 0. */
export function healthPortOf(config: Config): number {
  return config.WORKER_HEALTH_PORT === 0 ? 0 : config.WORKER_HEALTH_PORT + config.WORKER_INDEX;
}

/** The outage probe's bound on connecting and on its `SELECT 1`, ms (DatabaseOutage bounds the whole probe too). */
const PROBE_TIMEOUT_MS = 1_000;

/** Longest wait for notify.publish's counts and PublishOverflow's rows at a scrape, ms. */
const PUBLISH_JOBS_READ_MS = 1_000;

/**
 * Pause between the PublishOverflow relay's passes, ms: how soon after room frees up in notify.publish the stored
 * events start moving back (the ceiling is a backlog of PUBLISH_MAX_WAITING events: a second is nothing beside it).
 */
const PUBLISH_RELAY_INTERVAL_MS = 1_000;
/** Rows the relay locks, adds in one Redis script and deletes per transaction (~1 KB each). */
const PUBLISH_RELAY_BATCH_SIZE = 100;

/**
 * Strategy of the apply queue's backoff type: exponential with jitter, except that a retry within the window
 * (ORDER_NOT_FOUND, ORDER_NOT_PAID, TRANSACTION_NOT_SEEN, a key that does not fit yet) is never scheduled after the
 * window's end, so the last try happens at the end of the window and the job is dead-lettered then (a refund's
 * TRANSACTION_NOT_SEEN decided TRANSACTION_MISMATCH instead), not up to a doubling later. The window
 * counts from the job's first run (knownFirstRun: the stage resolved it before failing the attempt, for the same Job
 * instance) and goes on from the end of the latest outage this process knows of (`outageEndedAt`; windowEnd): the
 * stage read it before failing the attempt when the window looked over.
 */
export function windowBackoff(windowMs: number, outageEndedAt: () => number): BackoffStrategy {
  return (attemptsMade, _type, error, job) => {
    // The delay the stage drew for this retry and recorded in its FAILED entry (planRetry).
    const planned = plannedRetryDelay(error);
    if (planned !== undefined) return planned;
    const j = job as Job | undefined;
    if (j === undefined) return backoffDelay({ opts: {} }, attemptsMade);
    const waiting = error instanceof WorkerError && error.policy === "window";
    return backoffDelay(
      j,
      attemptsMade,
      waiting ? windowEnd(j.timestamp, knownFirstRun(j) ?? j.timestamp, windowMs, outageEndedAt()) : undefined,
    );
  };
}

/** Expiry of the readiness probe's key, ms. */
const WRITE_PROBE_TTL_MS = 10_000;

/** "ok" when `answer` settles within 1 s, else what went wrong, on one line (a readiness check's value). */
async function answersOk(answer: Promise<unknown>, timeoutMessage: string): Promise<string> {
  try {
    await withTimeout(answer, 1_000, timeoutMessage);
    return "ok";
  } catch (error) {
    return oneLine(error);
  }
}
