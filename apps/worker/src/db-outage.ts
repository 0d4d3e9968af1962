import type { Job } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { oneLine, type WorkerError } from "./errors.ts";
import { withTimeout } from "./health.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** What an outage pauses: the process's BullMQ Workers. */
export interface Consumer {
  /** BullMQ `Worker.pause(true)`: takes no new job; running jobs go on (they fail fast and are put back). */
  pause(doNotWaitActive: boolean): Promise<void>;
  resume(): Promise<void>;
}

export interface DatabaseOutageOptions {
  /** One cheap statement on a connection of its own (`probeDatabase`): resolves when PostgreSQL answers. */
  probe(): Promise<unknown>;
  /** Read when an outage starts (the Workers are created after the processors that report to this). */
  consumers(): readonly Consumer[];
  log: Logger;
  metrics: WorkerMetrics;
  /** Between probes while paused, ms; also how long a job that met the outage waits before it is taken again. */
  probeIntervalMs?: number;
  /** A probe not answered within this is a failed one, ms. */
  probeTimeoutMs?: number;
  /** Where each job's outages are counted (OUTAGES_MET_FIELD): the connection its queues use. */
  redis: Redis;
  /** WORKER_DB_OUTAGE_MAX_PAUSES: outages a job may meet without using an attempt. */
  maxPauses: number;
  /** Where the end of each outage is recorded for every process (`outageEndedKey` of QUEUE_PREFIX). */
  endedKey: string;
}

/**
 * Field of a job's own BullMQ hash (`<prefix>:<queue>:<job id>`) counting the outages the job met: kept with the job,
 * so every process — a restarted one, another one — goes on from the same count, and gone with it (BullMQ deletes the
 * hash when it removes the job: retention, or a replay removing the failed original, whose re-run starts at 0).
 */
export const OUTAGES_MET_FIELD = "wpnOutagesMet";

/**
 * Redis key recording when the latest PostgreSQL outage a worker process met ended (ms since the epoch), for the
 * unknown-order window (stage.ts, windowEnd), which goes on from there: read by every process, so one that took no job
 * during the outage (it never paused) or was started after it knows of it too. Each process writes it as it recovers
 * (the last one wins: they recover within a probe interval of each other); it never expires — an end before a job's
 * creation changes nothing for that job.
 */
export function outageEndedKey(prefix: string): string {
  return `${prefix}:db-outage:ended-at`;
}

/** 2 s: a recovered database is used again within about that; each probe is one `SELECT 1`. */
const PROBE_INTERVAL_MS = 2_000;
/** As the readiness check's bound: a database that takes longer to answer `SELECT 1` is not one to send jobs to. */
const PROBE_TIMEOUT_MS = 1_000;

/**
 * One process's view of PostgreSQL outages. A job failing with DB_UNAVAILABLE reports it (`confirm`); when a probe
 * confirms that PostgreSQL does not answer, the process pauses its Workers (no new jobs: every one would fail the
 * same way and use an attempt), logs DB_OUTAGE once, and probes every `probeIntervalMs` until PostgreSQL answers,
 * then resumes them and logs DB_RECOVERED. The failing jobs are put back by the stage processor without using an
 * attempt, so an outage of any length dead-letters nothing.
 *
 * Up to `maxPauses` times per job (`countOutage`): a statement that brings PostgreSQL down itself — it crashes the
 * server or has its backend terminated, and the probe fails during the recovery — looks like an outage every time its
 * job runs, and unbounded, that job was put back for ever (never dead-lettered, hurting the database every ~2 s).
 * A paused process takes no job until PostgreSQL answers, so a real outage, however long, puts a job back about once
 * per process that meets it with the job, and the bound spares jobs several outages.
 *
 * When it answers again, the outage's end is recorded (`endedAt`, and in Redis for the other processes): the
 * unknown-order window of a job goes on from there, since nothing the job waits for could arrive meanwhile.
 *
 * The probe before pausing keeps the attempt budget for a DB_UNAVAILABLE that is not an outage: a database that
 * answers the probe (one connection reset, a statement the client timed out) makes it an ordinary failed attempt,
 * so a job that fails that way every time still ends in the dead letters.
 */
export class DatabaseOutage {
  readonly retryInMs: number;
  readonly maxPauses: number;
  readonly #options: DatabaseOutageOptions;
  readonly #probeTimeoutMs: number;
  /** When the current outage was confirmed (ms since the epoch), null while PostgreSQL answers. */
  #since: number | null = null;
  /** See `endedAt`. */
  #endedAt = 0;
  /** The probe in flight, shared by the jobs failing at the same moment. */
  #probing: Promise<boolean> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(options: DatabaseOutageOptions) {
    this.#options = options;
    this.retryInMs = options.probeIntervalMs ?? PROBE_INTERVAL_MS;
    this.maxPauses = options.maxPauses;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? PROBE_TIMEOUT_MS;
  }

  /** True while paused for an outage. */
  get paused(): boolean {
    return this.#since !== null;
  }

  /**
   * When the latest outage known to this process ended (ms since the epoch; 0: none): the last one it recovered from,
   * or a later one another process recorded, as of the last `readEnded`. Now while paused: the outage goes on for this
   * process until its probe finds PostgreSQL back, and a job may still fail meanwhile for want of what the outage held
   * up (a running job the pause did not stop, or one a Worker's fetch already in flight took once due).
   */
  get endedAt(): number {
    return this.#since === null ? this.#endedAt : Date.now();
  }

  /** Reads the end of the latest outage any process recorded (outageEndedKey) into `endedAt`; returns `endedAt`. */
  async readEnded(): Promise<number> {
    const recorded = Number(await this.#options.redis.get(this.#options.endedKey));
    if (recorded > this.#endedAt) this.#endedAt = recorded;
    return this.endedAt;
  }

  /**
   * A job failed with DB_UNAVAILABLE. True when PostgreSQL does not answer (the process is paused; put the job back
   * without using an attempt), false when it does (an ordinary failed attempt).
   */
  async confirm(error: WorkerError): Promise<boolean> {
    if (this.#since !== null) return true;
    if (await this.#probe()) return false;
    this.#enter(error);
    return true;
  }

  /**
   * Counts one more outage met by `job` (one `confirm` that answered true for it); the job's outages so far, this one
   * included. Within `maxPauses` the job is put back without using an attempt; past it the failure is an attempt.
   */
  async countOutage(job: Pick<Job, "queueQualifiedName" | "id">): Promise<number> {
    // Only while the job's hash exists: HINCRBY on a removed job (by an operator, by retention meanwhile) would create
    // a hash holding this field alone, and a later add of that id would take it for the job and add nothing. A job
    // gone counts 0 (put back as before: BullMQ answers for a job it no longer has).
    const met = await this.#options.redis.eval(
      "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HINCRBY', KEYS[1], ARGV[1], 1) end return 0",
      1,
      `${job.queueQualifiedName}:${job.id}`,
      OUTAGES_MET_FIELD,
    );
    return Number(met);
  }

  /** Stops probing (shutdown); the Workers stay paused — they are being closed. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #probe(): Promise<boolean> {
    this.#probing ??= withTimeout(this.#options.probe(), this.#probeTimeoutMs, "no answer").then(
      () => true,
      () => false,
    );
    const probing = this.#probing;
    void probing.finally(() => {
      if (this.#probing === probing) this.#probing = null;
    });
    return probing;
  }

  #enter(error: WorkerError): void {
    if (this.#since !== null) return;
    this.#since = Date.now();
    const { log, metrics } = this.#options;
    metrics.dbPaused.set(1);
    metrics.dbOutages.inc();
    log.warn(
      { code: "DB_OUTAGE", err: error.message, probeEveryMs: this.retryInMs },
      "PostgreSQL does not answer: taking no jobs until it does (jobs that met it wait without using an attempt)",
    );
    for (const consumer of this.#options.consumers()) {
      consumer
        .pause(true)
        .catch((pauseError: unknown) =>
          log.warn({ code: "WORKER_ERROR", err: oneLine(pauseError) }, "pausing a worker failed"),
        );
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#probe().then((answered) => (answered ? this.#leave() : this.#schedule()));
    }, this.retryInMs);
  }

  async #leave(): Promise<void> {
    if (this.#closed || this.#since === null) return;
    const { log, metrics } = this.#options;
    const endedAt = Date.now();
    const ms = endedAt - this.#since;
    this.#since = null;
    this.#endedAt = Math.max(this.#endedAt, endedAt);
    metrics.dbPaused.set(0);
    // At warn like DB_OUTAGE, so a log read at warn shows both ends of the outage.
    log.warn({ code: "DB_RECOVERED", ms }, "PostgreSQL answers again: taking jobs");
    // Before the jobs are taken again. Not recorded (Redis refused the write), this process still knows it; the
    // others dead-letter a window fault of theirs by the window counted without this outage.
    try {
      await this.#options.redis.set(this.#options.endedKey, String(endedAt));
    } catch (error) {
      log.warn(
        { code: "OUTAGE_END_NOT_RECORDED", err: oneLine(error) },
        "the outage's end was not recorded for the other processes",
      );
    }
    // resume() reports its own failures as the Worker's `error` event (logged WORKER_ERROR); a main loop it starts
    // again (the pause let the last one end) reports its failure as WORKER_RUN_FAILED (WatchedWorker).
    await Promise.all(this.#options.consumers().map((consumer) => consumer.resume()));
  }
}
