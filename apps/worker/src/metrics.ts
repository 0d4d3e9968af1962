import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** The states of notify.publish that wpn_worker_publish_jobs reports. */
export const PUBLISH_JOB_STATES = ["waiting", "active", "delayed", "failed"] as const;

/**
 * Metrics of one worker process (each process serves its own /metrics; Prometheus adds them up). Label
 * values are bounded sets — queue names, outcome and error codes — never ids.
 */
export class WorkerMetrics {
  readonly registry = new Registry();

  /** Attempts by how they ended: completed, retry (will run again), dead (dead-lettered). */
  readonly jobs = new Counter({
    name: "wpn_worker_jobs_total",
    help: "Job attempts by queue and result (completed | retry | dead).",
    labelNames: ["queue", "result"] as const,
    registers: [this.registry],
  });

  /** Business outcomes: APPLIED, DUPLICATE, ALREADY, OUT_OF_STOCK, AMOUNT_MISMATCH, IGNORED, QUEUED, … */
  readonly outcomes = new Counter({
    name: "wpn_worker_outcomes_total",
    help: "Outcomes of processed notifications by stage and outcome code.",
    labelNames: ["stage", "outcome"] as const,
    registers: [this.registry],
  });

  /** Orders put in PAYMENT_REVIEW and notifications flagged REVIEW, by reason: the number to alert on. */
  readonly reviews = new Counter({
    name: "wpn_worker_reviews_total",
    help: "Notifications needing a human, by reason (AMOUNT_MISMATCH, OUT_OF_STOCK, PAID_AFTER_CLOSE, REFUND_ABNORMAL, ...).",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  readonly errors = new Counter({
    name: "wpn_worker_errors_total",
    help: "Failed attempts by queue and error code; WORKER_ERROR: a BullMQ Worker's error event (worker-error-log.ts).",
    labelNames: ["queue", "code"] as const,
    registers: [this.registry],
  });

  /**
   * Worker `error` events that only say this worker had lost the lock of a job it ran (lock-lost.ts), logged
   * JOB_LOCK_LOST at warn: a renewal or a move to completed/failed/delayed refused, so one job may count twice.
   */
  readonly locksLost = new Counter({
    name: "wpn_worker_job_locks_lost_total",
    help: "Lock renewals and job moves BullMQ refused because this worker had lost the job's lock (it runs elsewhere), by queue.",
    labelNames: ["queue"] as const,
    registers: [this.registry],
  });

  /**
   * Failures of the process's Redis connections, by source (`connection`: its own connection, or the queue of the
   * BullMQ Worker that reported one of its own): every one, although an outage logs only a few REDIS_ERROR lines.
   */
  readonly redisErrors = new Counter({
    name: "wpn_worker_redis_errors_total",
    help: "Failed reconnect attempts and commands of the Redis connections (outage logged as REDIS_ERROR), by source.",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: "wpn_worker_dead_letters_total",
    help: "Jobs moved to notify.dead, by source queue and error code.",
    labelNames: ["queue", "code"] as const,
    registers: [this.registry],
  });

  readonly published = new Counter({
    name: "wpn_worker_published_events_total",
    help: "Business events a worker added to notify.publish as it published them, by type (a re-run's copy of an event still kept is not added; events moved back from PublishOverflow count in wpn_worker_publish_overflow_drained_total).",
    labelNames: ["type"] as const,
    registers: [this.registry],
  });

  /**
   * Jobs of notify.publish by state, read from Redis at each scrape (readPublishJobs; none without PUBLISH_EVENTS).
   * The merchant's consumer takes them, so no worker of ours sees their failures: `failed` (out of attempts, kept
   * until retried) is the number to alert on, `waiting` a consumer that takes nothing, `delayed` one whose attempts
   * fail. Queue-wide: every process reports the same counts (aggregate with max, not sum).
   */
  readonly publishJobs = new Gauge({
    name: "wpn_worker_publish_jobs",
    help: "Jobs in notify.publish by state (waiting | active | delayed | failed), read at each scrape; -1 when Redis did not answer.",
    labelNames: ["state"] as const,
    registers: [this.registry],
    collect: async () => {
      if (!this.#readPublishJobs) return;
      const counts = await this.#readPublishJobs();
      for (const state of PUBLISH_JOB_STATES) this.publishJobs.set({ state }, counts?.[state] ?? -1);
    },
  });

  #readPublishJobs: (() => Promise<Record<string, number> | null>) | undefined;

  /** Sets how wpn_worker_publish_jobs is read: counts by state, or null when Redis did not answer (reported as -1). */
  readPublishJobs(read: () => Promise<Record<string, number> | null>): void {
    this.#readPublishJobs = read;
  }

  /** Events stored in PublishOverflow instead of notify.publish (PUBLISH_DIVERTED): the queue held PUBLISH_MAX_WAITING. */
  readonly publishDiverted = new Counter({
    name: "wpn_worker_publish_diverted_total",
    help: "Events stored in PublishOverflow because notify.publish held PUBLISH_MAX_WAITING waiting or delayed jobs (PUBLISH_DIVERTED), by type.",
    labelNames: ["type"] as const,
    registers: [this.registry],
  });

  /** Stored events the relay placed in notify.publish and deleted (PUBLISH_OVERFLOW_DRAINED). */
  readonly publishDrained = new Counter({
    name: "wpn_worker_publish_overflow_drained_total",
    help: "Events the relay moved from PublishOverflow to notify.publish (PUBLISH_OVERFLOW_DRAINED).",
    registers: [this.registry],
  });

  /** Relay steps that failed (PUBLISH_RELAY_FAILED): their rows stay and the next pass takes them again. */
  readonly publishRelayFailures = new Counter({
    name: "wpn_worker_publish_relay_failures_total",
    help: "Relay passes that failed (PUBLISH_RELAY_FAILED: Redis or PostgreSQL did not answer, or a stored event did not parse).",
    registers: [this.registry],
  });

  /**
   * Rows of PublishOverflow, counted at each scrape (readPublishOverflowRows), with PUBLISH_EVENTS=false too: events
   * waiting in PostgreSQL for room in notify.publish, or, without the feature, for it to be set back. Table-wide: every
   * process reports the same (aggregate with max).
   */
  readonly publishOverflowRows = new Gauge({
    name: "wpn_worker_publish_overflow_rows",
    help: "Events waiting in PublishOverflow for room in notify.publish, counted at each scrape; -1 when PostgreSQL did not answer.",
    registers: [this.registry],
    collect: async () => {
      if (!this.#readPublishOverflowRows) return;
      this.publishOverflowRows.set((await this.#readPublishOverflowRows()) ?? -1);
    },
  });

  #readPublishOverflowRows: (() => Promise<number | null>) | undefined;

  /** Sets how wpn_worker_publish_overflow_rows is read: the row count, or null when PostgreSQL did not answer (-1). */
  readPublishOverflowRows(read: () => Promise<number | null>): void {
    this.#readPublishOverflowRows = read;
  }

  readonly stockMovements = new Counter({
    name: "wpn_worker_stock_movements_total",
    help: "Inventory movements committed (one per SKU and order), by reason (PAYMENT | REFUND).",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  /**
   * 1 while this process takes no jobs because PostgreSQL does not answer — at start, before its migrations could be
   * checked, or paused during an outage — else 0: the number to alert on (with the outages counter).
   */
  readonly dbPaused = new Gauge({
    name: "wpn_worker_db_paused",
    help: "1 while this process takes no jobs because PostgreSQL does not answer (start-up wait or outage pause), else 0.",
    registers: [this.registry],
  });

  readonly dbOutages = new Counter({
    name: "wpn_worker_db_outages_total",
    help: "Times this process paused taking jobs because PostgreSQL stopped answering.",
    registers: [this.registry],
  });

  /** Jobs that met an outage: put back (delayed) without using an attempt, not counted in jobs/errors. */
  readonly dbDeferred = new Counter({
    name: "wpn_worker_db_deferred_jobs_total",
    help: "Jobs put back without using an attempt because PostgreSQL did not answer, by queue.",
    labelNames: ["queue"] as const,
    registers: [this.registry],
  });

  /**
   * Failures met during an outage that used an attempt, their job having met WORKER_DB_OUTAGE_MAX_PAUSES outages
   * already: a job that keeps meeting outages may be what causes them (a statement that crashes PostgreSQL).
   */
  readonly dbPausesExhausted = new Counter({
    name: "wpn_worker_db_outage_pauses_exhausted_total",
    help: "Jobs failing while PostgreSQL did not answer that used an attempt: put back WORKER_DB_OUTAGE_MAX_PAUSES times already, by queue.",
    labelNames: ["queue"] as const,
    registers: [this.registry],
  });

  readonly processing = new Histogram({
    name: "wpn_worker_job_duration_seconds",
    help: "Time a worker spent on one attempt, by queue.",
    labelNames: ["queue"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly waiting = new Histogram({
    name: "wpn_worker_job_wait_seconds",
    help: "Time from a job's enqueue to the start of its first attempt, by queue (retries and jobs put back are not measured).",
    labelNames: ["queue"] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600],
    registers: [this.registry],
  });

  /** Parse jobs recorded per statement (group commit): count = statements, sum = jobs. */
  readonly parseBatchSize = new Histogram({
    name: "wpn_worker_parse_batch_size",
    help: "Parse jobs recorded together in one statement and one apply enqueue.",
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [this.registry],
  });

  /** Payment apply jobs committed per statement (group commit): count = statements, sum = jobs. Refunds run alone. */
  readonly applyBatchSize = new Histogram({
    name: "wpn_worker_apply_batch_size",
    help: "Payment apply jobs committed together in one statement.",
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });

  /** Ingress acceptance to committed effect: the latency the merchant sees. */
  readonly endToEnd = new Histogram({
    name: "wpn_worker_notification_latency_seconds",
    help: "Time from the ingress accepting a notification to its effects being committed.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600],
    registers: [this.registry],
  });

  constructor(labels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry, prefix: "wpn_worker_" });
  }
}
