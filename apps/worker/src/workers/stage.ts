import { markNotificationDead, type PrismaClient, recordNotificationFailure } from "@wpn/db";
import {
  APPLY_BACKOFF_TYPE,
  applyBackoffDelay,
  DEAD_JOB_NAME,
  type DeadLetter,
  type DeadLetterStage,
  deadLetterJobId,
  decodeJob,
  type JobSchema,
} from "@wpn/queue";
import { DelayedError, type Job, type Processor, type Queue, UnrecoverableError } from "bullmq";
import type { Logger } from "pino";
import { oneLine, type RetryPolicy, toWorkerError, type WorkerError } from "../errors.ts";
import type { WorkerMetrics } from "../metrics.ts";

/**
 * The keys of the order a job's notification names, as its Notification row has them: its dead letter carries them,
 * and its lines `outTradeNo` (its "dead-lettered" line all three).
 */
export interface LetterKeys {
  outTradeNo: string | null;
  subMchid: string | null;
  outRefundNo: string | null;
}

/** What a stage handler gets besides its payload. */
export interface StageContext {
  /** Carries queue, jobId, attempt, notificationId and outTradeNo on every line. */
  readonly log: Logger;
  /**
   * Sets the keys the job's lines and letter carry, and rebinds `log`: once the notification opened, or from what one
   * refused after it opened named — the values its row is given, never read from one that did not open.
   */
  setKeys(keys: LetterKeys): void;
  /**
   * Whether the job's unknown-order window is over (windowEnd): a window fault thrown now would be dead-lettered, not
   * retried. Judged once per attempt — the stage's own decision on a failure of this attempt reuses the answer — so a
   * handler that decides something final instead of throwing (a refund's TRANSACTION_MISMATCH) and the stage never
   * disagree about a window ending in between.
   */
  windowOver(): Promise<boolean>;
}

export interface StageResult {
  /** Outcome code: APPLIED, DUPLICATE, ALREADY, QUEUED, IGNORED, OUT_OF_STOCK, … */
  outcome: string;
}

/** One pipeline stage: its queue, payload schema and handler. */
export interface StageDefinition<P, R extends StageResult> {
  queue: DeadLetterStage;
  schema: JobSchema<P>;
  /** The notification id of a raw (maybe invalid) payload, for logs and dead letters. */
  notificationIdOf(data: unknown): string | null;
  outTradeNoOf(payload: P): string | null;
  handle(payload: P, ctx: StageContext): Promise<R>;
}

/**
 * The order number of a raw payload as the stage's own lines and letters have it (`outTradeNoOf` of the decoded
 * payload), null when it does not decode: for a job failed outside the processor (stalled too often).
 */
export function outTradeNoOfData<P, R extends StageResult>(def: StageDefinition<P, R>, data: unknown): string | null {
  const decoded = decodeJob(def.schema, data);
  return decoded.ok ? def.outTradeNoOf(decoded.value) : null;
}

/** Process-wide collaborators of every stage. */
export interface StageRuntime {
  log: Logger;
  metrics: WorkerMetrics;
  prisma: PrismaClient;
  deadQueue: Queue;
  /** WORKER_UNKNOWN_ORDER_RETRY_SECONDS in ms. */
  windowMs: number;
  /** Told of every DB_UNAVAILABLE (DatabaseOutage); without it, such a failure is an ordinary failed attempt. */
  outage?: OutageReport;
  /**
   * When a worker first started the job, recorded with it on first use (first-run.ts, firstRunOf): its window counts
   * from there. Called before a job is retried or put back, so every later run knows its first one.
   */
  firstRun(job: Job): Promise<number>;
}

/** What a stage needs of DatabaseOutage. */
export interface OutageReport {
  /** True when PostgreSQL does not answer: the job is put back without using an attempt (within `maxPauses`). */
  confirm(error: WorkerError): Promise<boolean>;
  /** How long a job put back waits before it can be taken again, ms. */
  readonly retryInMs: number;
  /** Counts one more outage met by `job`, kept with the job in Redis; its outages so far, this one included. */
  countOutage(job: Job): Promise<number>;
  /** WORKER_DB_OUTAGE_MAX_PAUSES: outages a job may meet without using an attempt; the next ones use one each. */
  readonly maxPauses: number;
  /** When the latest outage this process knows of ended (ms since the epoch; 0: none). */
  readonly endedAt: number;
  /** Reads when the latest outage any process recorded ended into `endedAt`; returns `endedAt`. */
  readEnded(): Promise<number>;
}

/**
 * When a job's unknown-order window ends (ms since the epoch): WORKER_UNKNOWN_ORDER_RETRY_SECONDS after its first run
 * (firstRunAt; never before its creation, whatever the clocks of the processes), or after the end of the latest
 * PostgreSQL outage when that is later. An outage stops the whole pipeline, so what the job waits for (its order, its
 * payment — acknowledged during the outage and still to be parsed and applied —, a key) could not arrive meanwhile:
 * the outage must not use up the window, and the job gets a whole one after it. The first run stands for the outages
 * no worker observed: while no worker ran (a deploy gone wrong, a crash loop, the fleet scaled to 0) nothing was
 * recorded, and the jobs queued meanwhile, run for the first time when workers come back, get a whole window then.
 */
export function windowEnd(createdAt: number, firstRunAt: number, windowMs: number, outageEndedAt: number): number {
  return Math.max(createdAt, firstRunAt, outageEndedAt) + windowMs;
}

/** The job met a PostgreSQL outage: the processor puts it back (delayed) without using an attempt. */
class MetOutageError extends Error {
  override readonly name = "MetOutageError";
  constructor(
    readonly error: WorkerError,
    /** The outages the job met, this one included (at most WORKER_DB_OUTAGE_MAX_PAUSES). */
    readonly outagesMet: number,
  ) {
    super(error.message, { cause: error });
  }
}

/**
 * A window fault on the job's last attempt while its window lasts: the processor puts it back (delayed by `delayMs`,
 * windowWaitDelay) without using an attempt, so that the window, not the attempts, ends it.
 */
class WindowWaitError extends Error {
  override readonly name = "WindowWaitError";
  readonly delayMs: number;
  constructor(
    readonly error: WorkerError,
    job: Pick<Job, "opts" | "attemptsMade">,
    /** windowEnd, ms since the epoch. */
    readonly windowEndsAt: number,
  ) {
    super(error.message, { cause: error });
    this.delayMs = windowWaitDelay(job, windowEndsAt);
  }
}

/**
 * Thrown after a job has been dead-lettered: an UnrecoverableError (BullMQ fails the job without further
 * attempts) that the `failed` listener recognises so it does not dead-letter the job a second time.
 */
export class DeadLetteredError extends UnrecoverableError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** The dead-letter copy could not be written to `notify.dead` (Redis refused it, after the retries in `deadLetter`). */
export class LetterNotWrittenError extends Error {
  override readonly name = "LetterNotWrittenError";
}

/**
 * Waits between tries of writing a dead letter, ms (~4 s in all): a Redis that refuses writes for a moment (READONLY
 * right after a failover, which ioredis does not resend; OOM until memory is freed) is tried again at once.
 */
const LETTER_RETRY_DELAYS_MS = [200, 1_000, 3_000];
/**
 * When the letter still cannot be written, the job waits this long (delayed, its attempts untouched) and runs
 * again, ms: a job must not end failed without its letter (nothing could replay it), nor be retried while a letter
 * with a wrong reason is written beside it.
 */
const LETTER_DEFER_MS = 5_000;

/**
 * A retry is pointless when less than this is left of the unknown-order window, ms: the apply backoff's
 * minimum delay, so the last attempt is the one the backoff schedules at the very end of the window.
 */
const WINDOW_MARGIN_MS = 100;

/**
 * Wraps a stage handler into a BullMQ processor with the outcomes of the worker contract:
 * - the handler returns: the job completes (including "already applied");
 * - it throws a retryable error: the attempt is recorded (Notification FAILED, timeline, metric, log) and
 *   the error is re-thrown so BullMQ retries with the queue's backoff;
 * - it throws a window fault on the job's last attempt while its unknown-order window lasts: recorded as above, and
 *   the job is put back (delayed, at the latest until the window's end) without using an attempt — the window, not
 *   the attempts, ends it (failureVerdict);
 * - it throws a permanent error, or the retries / the unknown-order window are used up: the job is copied to
 *   `notify.dead` with its code, the notification is marked DEAD, and UnrecoverableError stops BullMQ;
 * - it throws DB_UNAVAILABLE and PostgreSQL does not answer (`rt.outage`): no attempt is used — the job is put back
 *   (delayed by `retryInMs`) while the process pauses until PostgreSQL answers — up to WORKER_DB_OUTAGE_MAX_PAUSES
 *   times per job; after that, such a failure is a retryable one as above (logged DB_OUTAGE_PAUSES_EXHAUSTED).
 * A payload that fails its schema (or has an unknown version) is dead-lettered without running the handler.
 */
export function createStageProcessor<P, R extends StageResult>(
  def: StageDefinition<P, R>,
  rt: StageRuntime,
): Processor {
  return async (job, token) => {
    try {
      return await runStage(def, rt, job, token !== undefined);
    } catch (error) {
      if (error instanceof MetOutageError && token !== undefined && rt.outage) {
        // Recorded before the job is put back, so its next run counts its window from this first one.
        await rt.firstRun(job);
        rt.metrics.dbDeferred.inc({ queue: def.queue });
        rt.log.debug(
          {
            queue: def.queue,
            jobId: job.id,
            code: error.error.code,
            retryInMs: rt.outage.retryInMs,
            outagesMet: error.outagesMet,
            maxPauses: rt.outage.maxPauses,
          },
          "PostgreSQL does not answer: the job waits without using an attempt",
        );
        // skipAttempt: attemptsMade stays; DelayedError tells BullMQ the job was moved, not failed.
        await job.moveToDelayed(Date.now() + rt.outage.retryInMs, token);
        throw new DelayedError();
      }
      if (error instanceof WindowWaitError && token !== undefined) {
        // skipAttempt, as for an outage: the job keeps its last attempt for the window's end.
        await job.moveToDelayed(Date.now() + error.delayMs, token);
        throw new DelayedError();
      }
      if (!(error instanceof LetterNotWrittenError) || token === undefined) throw error;
      await rt.firstRun(job);
      rt.log.error(
        {
          queue: def.queue,
          jobId: job.id,
          code: "DEAD_LETTER_DEFERRED",
          err: oneLine(error.cause),
          retryInMs: LETTER_DEFER_MS,
        },
        "dead letter not written: the job runs again later",
      );
      await job.moveToDelayed(Date.now() + LETTER_DEFER_MS, token);
      throw new DelayedError();
    }
  };
}

/** `deferrable`: the job can be put back without using an attempt (the processor holds its lock token). */
async function runStage<P, R extends StageResult>(
  def: StageDefinition<P, R>,
  rt: StageRuntime,
  job: Job,
  deferrable: boolean,
): Promise<R> {
  const started = performance.now();
  const attempt = job.attemptsMade + 1;
  const notificationId = def.notificationIdOf(job.data);
  let keys: LetterKeys = { outTradeNo: null, subMchid: null, outRefundNo: null };
  // Built on first use: most jobs log nothing at the default level, and a pino child costs a few µs.
  let log: Logger | null = null;
  // Judged on first use (it may read Redis), then kept for the attempt: see StageContext.windowOver.
  let windowJudged: Promise<boolean> | null = null;
  const windowOver = () => {
    windowJudged ??= isWindowOver(rt, job);
    return windowJudged;
  };
  const ctx: StageContext = {
    get log() {
      log ??= rt.log.child({ queue: def.queue, jobId: job.id, attempt, notificationId, outTradeNo: keys.outTradeNo });
      return log;
    },
    setKeys(value: LetterKeys) {
      keys = { outTradeNo: value.outTradeNo, subMchid: value.subMchid, outRefundNo: value.outRefundNo };
      log = null;
    },
    windowOver,
  };
  // The wait before a job's first run only: a job put back without using an attempt (an outage, a deferred letter)
  // or re-run after a stall still has attemptsMade 0, and would be observed again with the outage in its wait.
  if (job.attemptsMade === 0 && (job.attemptsStarted ?? 1) <= 1)
    rt.metrics.waiting.observe({ queue: def.queue }, Math.max(0, Date.now() - job.timestamp) / 1000);
  try {
    const decoded = decodeJob(def.schema, job.data);
    if (!decoded.ok) {
      rt.metrics.errors.inc({ queue: def.queue, code: decoded.code });
      const failure = { notificationId, keys, log: ctx.log };
      throw await deadLetter(rt, def.queue, job, { code: decoded.code, message: decoded.message }, failure);
    }
    ctx.setKeys({ outTradeNo: def.outTradeNoOf(decoded.value), subMchid: null, outRefundNo: null });
    try {
      const result = await def.handle(decoded.value, ctx);
      rt.metrics.jobs.inc({ queue: def.queue, result: "completed" });
      rt.metrics.outcomes.inc({ stage: def.queue, outcome: result.outcome });
      return result;
    } catch (error) {
      const err = toWorkerError(error);
      // Before the attempt is counted, so that a job on its last attempt is not dead-lettered for an outage either.
      if (deferrable && err.code === "DB_UNAVAILABLE" && rt.outage && (await rt.outage.confirm(err))) {
        const outagesMet = await rt.outage.countOutage(job);
        if (outagesMet <= rt.outage.maxPauses) throw new MetOutageError(err, outagesMet);
        rt.metrics.dbPausesExhausted.inc({ queue: def.queue });
        ctx.log.warn(
          { code: "DB_OUTAGE_PAUSES_EXHAUSTED", err: err.message, outagesMet, maxPauses: rt.outage.maxPauses },
          "PostgreSQL does not answer, but this job was put back for outages too often already: it uses an attempt (its statement may be what brings PostgreSQL down)",
        );
      }
      const failure = { notificationId, keys, log: ctx.log };
      throw await onFailure(rt, def.queue, job, err, failure, { windowOver, canWait: deferrable });
    }
  } finally {
    rt.metrics.processing.observe({ queue: def.queue }, (performance.now() - started) / 1000);
  }
}

interface FailureContext {
  notificationId: string | null;
  /** Written to the letter and its "dead-lettered" line; `log` carries their outTradeNo already. */
  keys: LetterKeys;
  log: Logger;
  /** Told once the letter is in notify.dead, before the notification is marked (the `failed` listener's shutdown report). */
  onLetterWritten?: () => void;
}

/**
 * What a failed attempt leads to: its dead letter, a retry (the queue's backoff, using an attempt), or a wait without
 * using one (put back delayed by windowWaitDelay).
 */
export type FailureVerdict = "dead" | "retry" | "wait";

/**
 * The rule of onFailure: a permanent error, or a window fault whose window is over, is dead-lettered; a failure with
 * attempts left is retried; on the last attempt, a window fault whose window lasts waits for it (`canWait`: the job can
 * be put back), anything else is dead-lettered.
 *
 * The window, not the attempts, ends a window fault: the queues' 20 attempts outlast the longest window counted from a
 * job's first run (retry-window.test.ts), but a PostgreSQL outage gives every waiting job a whole window from its end
 * (windowEnd) whatever it used of its attempts. With the longest window (3 days) a job that met one after 13 or more
 * attempts ran out of them up to the whole new window early — dead-lettered ORDER_NOT_FOUND / ORDER_NOT_PAID, a
 * refund's TRANSACTION_NOT_SEEN instead of decided TRANSACTION_MISMATCH — while what it waited for, acknowledged
 * during the outage, was still to be applied.
 */
export function failureVerdict(f: {
  policy: RetryPolicy;
  /** The attempt's StageContext.windowOver, for a window fault (false for the others). */
  windowOver: boolean;
  /** This attempt, 1-based. */
  attempt: number;
  maxAttempts: number;
  /** The job can be put back without using an attempt (the processor holds its lock token). */
  canWait: boolean;
}): FailureVerdict {
  if (f.policy === "stop" || (f.policy === "window" && f.windowOver)) return "dead";
  if (f.attempt < f.maxAttempts) return "retry";
  return f.policy === "window" && f.canWait ? "wait" : "dead";
}

/**
 * How long a job on its last attempt waits for its window (`deadline`: windowEnd), ms: the job's next doubling — as
 * its retry would have waited, had it an attempt left: 2^19 s with the queues' 20 attempts, beyond any window —,
 * never past the window's end (applyBackoffDelay, as the apply queue's strategy caps its retries).
 */
export function windowWaitDelay(job: Pick<Job, "opts" | "attemptsMade">, deadline: number): number {
  return backoffDelay(job, job.attemptsMade + 1, deadline);
}

/**
 * The job's exponential backoff (its `opts.backoff` delay and jitter: 1 s and 0.5 unless set) for its retry number
 * `attemptsMade` (BullMQ's count: 1 for the first retry), ms, capped at `deadline` when given (applyBackoffDelay).
 */
export function backoffDelay(job: Pick<Job, "opts">, attemptsMade: number, deadline?: number): number {
  const backoff = job.opts.backoff;
  const spec = typeof backoff === "object" ? backoff : { delay: 1_000, jitter: 0.5 };
  return applyBackoffDelay({
    attemptsMade,
    delay: spec.delay ?? 1_000,
    jitter: spec.jitter ?? 0,
    ...(deadline === undefined ? {} : { deadline }),
  });
}

/**
 * Decides dead letter, retry or wait for a failed attempt (failureVerdict; `windowOver`: the attempt's
 * StageContext.windowOver); returns the error to throw: a WindowWaitError for a wait.
 */
async function onFailure(
  rt: StageRuntime,
  queue: DeadLetterStage,
  job: Job,
  err: WorkerError,
  f: FailureContext,
  window: { windowOver: () => Promise<boolean>; canWait: boolean },
): Promise<Error> {
  rt.metrics.errors.inc({ queue, code: err.code });
  const attempt = job.attemptsMade + 1;
  const maxAttempts = job.opts.attempts ?? 1;
  const windowOver = err.policy === "window" && (await window.windowOver());
  const verdict = failureVerdict({ policy: err.policy, windowOver, attempt, maxAttempts, canWait: window.canWait });
  if (verdict === "dead") return deadLetter(rt, queue, job, err, f);
  // Recorded before the retry (see StageRuntime.firstRun); the backoff strategy reads it too (knownFirstRun).
  const firstRunAt = await rt.firstRun(job);
  rt.metrics.jobs.inc({ queue, result: "retry" });
  const logFields = { code: err.code, err: err.message, attempt, maxAttempts };
  const wait =
    verdict === "wait"
      ? new WindowWaitError(err, job, windowEnd(job.timestamp, firstRunAt, rt.windowMs, rt.outage?.endedAt ?? 0))
      : null;
  if (wait)
    f.log.warn(
      { ...logFields, retryInMs: wait.delayMs, windowEndsAt: new Date(wait.windowEndsAt).toISOString() },
      "last attempt failed within the window: retried without using an attempt, at the latest at the window's end",
    );
  else if (err.code === "INTERNAL")
    f.log.error(
      { ...logFields, stack: err.cause instanceof Error ? err.cause.stack : undefined },
      "attempt failed, will retry",
    );
  else f.log.warn(logFields, "attempt failed, will retry");
  if (f.notificationId !== null) {
    const next = wait
      ? { retryInMs: wait.delayMs }
      : planRetry(job, err, windowEnd(job.timestamp, firstRunAt, rt.windowMs, rt.outage?.endedAt ?? 0));
    try {
      await recordNotificationFailure(rt.prisma, {
        notificationId: f.notificationId,
        stage: queue,
        code: err.code,
        message: err.message,
        attempt,
        ...next,
      });
    } catch (recordError) {
      // The retry does not depend on this bookkeeping (often the database is what failed); say so and go on.
      f.log.warn({ code: "FAILURE_NOT_RECORDED", err: oneLine(recordError) }, "could not record the failed attempt");
    }
  }
  return wait ?? err;
}

/** The retry delays planRetry chose, by the error the processor throws: the apply queue's strategy returns them. */
const plannedDelays = new WeakMap<Error, number>();

/**
 * The delay planRetry chose for the retry after `error`, ms, if it chose one: windowBackoff (the apply queue's strategy)
 * returns it, so the FAILED entry's `retryInMs` is the delay BullMQ schedules.
 */
export function plannedRetryDelay(error: Error | undefined): number | undefined {
  return error === undefined ? undefined : plannedDelays.get(error);
}

/**
 * When the retry of a failed attempt (`err`, retried by BullMQ with the job's backoff) will run, for its FAILED entry.
 * The apply queue's strategy is the worker's own: the delay is drawn here (as windowBackoff would: capped at
 * `windowEndsAt` for a window fault) and handed to it (plannedRetryDelay) — exact. BullMQ's built-in exponential
 * (parse) draws its own jitter after the attempt: its range instead, `retryInMsRange` [min, max] (exact without
 * jitter). Any other backoff: neither (`retryInMs` null).
 */
function planRetry(
  job: Pick<Job, "opts" | "attemptsMade">,
  err: WorkerError,
  windowEndsAt: number,
): { retryInMs?: number; retryInMsRange?: [number, number] } {
  const backoff = job.opts.backoff;
  if (typeof backoff !== "object") return {};
  const attempt = job.attemptsMade + 1;
  if (backoff.type === APPLY_BACKOFF_TYPE) {
    const delayMs = backoffDelay(job, attempt, err.policy === "window" ? windowEndsAt : undefined);
    plannedDelays.set(err, delayMs);
    return { retryInMs: delayMs };
  }
  if (backoff.type !== "exponential") return {};
  // BullMQ's exponential: drawn from the top `jitter` fraction of delay · 2^(attempt−1).
  const max = Math.round(2 ** (attempt - 1) * (backoff.delay ?? 0));
  const jitter = backoff.jitter ?? 0;
  return jitter > 0 ? { retryInMsRange: [Math.floor(max * (1 - jitter)), max] } : { retryInMs: max };
}

/**
 * The window of a window fault is over (windowEnd from the job's first run, within WINDOW_MARGIN_MS). Judged by the
 * outages this process knows of first, and only when that says over, by the latest any process recorded (one Redis read per job
 * dead-lettered this way): another process may have met an outage this one did not — it took no job meanwhile, or
 * was started after it.
 */
async function isWindowOver(rt: StageRuntime, job: Job): Promise<boolean> {
  const firstRunAt = await rt.firstRun(job);
  const over = (outageEndedAt: number) =>
    Date.now() + WINDOW_MARGIN_MS >= windowEnd(job.timestamp, firstRunAt, rt.windowMs, outageEndedAt);
  if (!over(rt.outage?.endedAt ?? 0)) return false;
  return rt.outage === undefined || over(await rt.outage.readEnded());
}

/**
 * Waits between tries of marking a dead-lettered notification DEAD while the database refuses it for a
 * transient reason, ms (~5 min in all). The job's last attempt has no retry to do the marking later, and its
 * `failed` listener does not dead-letter again (the letter exists), so the marking waits here: BullMQ keeps
 * renewing the job's lock meanwhile, and should this process die, the stalled job runs again and does it.
 */
const DEAD_MARK_RETRY_DELAYS_MS = [250, 1_000, 4_000, 15_000, 30_000, 60_000, 60_000, 60_000, 60_000];

/** Adds the letter (idempotent: its job id), trying again while Redis refuses; throws LetterNotWrittenError after. */
async function writeLetter(rt: StageRuntime, letter: DeadLetter, letterId: string, log: Logger): Promise<void> {
  for (let tried = 0; ; tried++) {
    try {
      await rt.deadQueue.add(DEAD_JOB_NAME, letter, { jobId: letterId });
      return;
    } catch (error) {
      const delayMs = LETTER_RETRY_DELAYS_MS[tried];
      if (delayMs === undefined)
        throw new LetterNotWrittenError(`dead letter ${letterId} not written`, { cause: error });
      log.warn(
        { code: "DEAD_LETTER_RETRY", err: oneLine(error), deadLetterId: letterId, retryInMs: delayMs },
        "dead letter not written; trying again",
      );
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/**
 * Copies the job to `notify.dead` (idempotent: deterministic job id), records the letter on the notification
 * (`markNotificationDead`: DEAD, or a settled one's DEAD_LETTERED entry alone) and returns the DeadLetteredError to
 * throw. Throws LetterNotWrittenError when Redis keeps refusing the letter (the processor then delays the job, so it
 * is neither failed without a letter nor retried beside a wrong one). A transient database failure of the marking is
 * retried here (DEAD_MARK_RETRY_DELAYS_MS); when it still fails, the database error is returned instead, so an
 * attempt that has retries left is retried and the marking done then (the letter exists already).
 */
export async function deadLetter(
  rt: StageRuntime,
  queue: DeadLetterStage,
  job: Pick<Job, "id" | "name" | "data" | "attemptsMade" | "timestamp">,
  err: Pick<WorkerError, "code" | "message">,
  f: FailureContext,
): Promise<Error> {
  const jobId = job.id ?? "unknown";
  const letterId = deadLetterJobId(queue, jobId, job.timestamp);
  const letter: DeadLetter = {
    v: 1,
    queue,
    jobName: job.name,
    jobId,
    notificationId: f.notificationId,
    outTradeNo: f.keys.outTradeNo,
    subMchid: f.keys.subMchid,
    outRefundNo: f.keys.outRefundNo,
    code: err.code,
    message: err.message,
    attemptsMade: job.attemptsMade + 1,
    failedAt: Date.now(),
    data: job.data,
  };
  await writeLetter(rt, letter, letterId, f.log);
  f.onLetterWritten?.();
  if (f.notificationId !== null) {
    const mark = {
      notificationId: f.notificationId,
      stage: queue,
      code: err.code,
      message: err.message,
      attempt: job.attemptsMade + 1,
      deadLetterId: letterId,
    };
    for (let tried = 0; ; tried++) {
      try {
        await markNotificationDead(rt.prisma, mark);
        break;
      } catch (dbError) {
        const error = toWorkerError(dbError);
        const delayMs = DEAD_MARK_RETRY_DELAYS_MS[tried];
        if (error.policy === "stop" || delayMs === undefined) {
          f.log.error(
            { code: "DEAD_NOT_RECORDED", err: oneLine(dbError), deadLetterId: letterId },
            "dead letter written, notification not marked",
          );
          return error;
        }
        f.log.warn(
          { code: error.code, err: oneLine(dbError), deadLetterId: letterId, retryInMs: delayMs },
          "dead letter written, marking the notification DEAD failed; trying again",
        );
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }
  rt.metrics.jobs.inc({ queue, result: "dead" });
  rt.metrics.deadLetters.inc({ queue, code: err.code });
  f.log.error(
    {
      code: err.code,
      err: err.message,
      deadLetterId: letterId,
      subMchid: f.keys.subMchid,
      outRefundNo: f.keys.outRefundNo,
    },
    "dead-lettered",
  );
  return new DeadLetteredError(err.code, err.message);
}
