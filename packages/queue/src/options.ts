import type { DefaultJobOptions } from "bullmq";
import { APPLY_BACKOFF_TYPE } from "./jobs/apply.ts";
import { QueueName as Q, type QueueName } from "./names.ts";

/**
 * Retry and retention policy per queue, set on the producer side so every enqueue gets it.
 * Retention is bounded by age and count so Redis memory stays flat under sustained traffic: PostgreSQL's
 * `Notification` table, not Redis, is the durable record.
 */
export const defaultJobOptions: Record<QueueName, DefaultJobOptions> = {
  [Q.Parse]: {
    // 20 attempts, like apply: the doubling (1 s, 2 s, 4 s …, ±50% jitter so a recovering database is not hit in
    // lockstep) reaches the 20th attempt 3–6 days after the first, so the attempts outlast the longest retry window
    // WORKER_UNKNOWN_ORDER_RETRY_SECONDS allows (3 days): a window fault (a key that does not fit yet) is dead-lettered
    // by the first attempt after the window's end (at most one doubling late), never earlier (nor after an outage, which
    // gives a job a whole window whatever it used of these: the worker then waits on the last attempt without using it,
    // apps/worker/src/workers/stage.ts failureVerdict). 12 attempts (~26 min)
    // ran out inside the default 1 h window. BullMQ's built-in type, not a worker-supplied one like apply's: the
    // ingress writes this type on every job, and a worker of an earlier release, which lacks any strategy for parse
    // jobs, would stall each job it failed (BullMQ: "Unknown backoff strategy") during a rolling deploy.
    attempts: 20,
    backoff: { type: "exponential", delay: 1_000, jitter: 0.5 },
    removeOnComplete: { age: 3_600, count: 10_000 },
    removeOnFail: { age: 7 * 24 * 3_600, count: 100_000 },
  },
  [Q.Apply]: {
    attempts: 20,
    // Same doubling as parse (see applyBackoffDelay), computed by the worker so that a retry waiting for an order
    // the checkout has not committed yet is never scheduled past its retry window.
    backoff: { type: APPLY_BACKOFF_TYPE, delay: 1_000, jitter: 0.5 },
    removeOnComplete: { age: 3_600, count: 10_000 },
    removeOnFail: { age: 7 * 24 * 3_600, count: 100_000 },
  },
  [Q.Publish]: {
    // Consumed by the merchant's own worker, which fails an attempt while its downstream system (ERP, fulfilment) is
    // down: the same budget as parse and apply — 20 attempts, the 20th 3–6 days after the first — so an outage of
    // hours or a weekend is retried through. 10 attempts from 2 s ran out after 8.5–17 min. BullMQ's built-in
    // type: the consumer's worker knows no strategy of ours (apps/worker/README.md, "Events").
    attempts: 20,
    backoff: { type: "exponential", delay: 1_000, jitter: 0.5 },
    removeOnComplete: { age: 3_600, count: 10_000 },
    // Never trimmed: no worker of ours sees the consumer's failures, so no dead letter is written, and a failed job is
    // the only copy of its event (at least once). It stays failed until retried (the dashboard's bull-board retry, or
    // `Job#retry` with resetAttemptsMade, gives it 20 attempts again; `retryJobs` keeps them, so it gets one more:
    // apps/worker/README.md, "Events"), and is counted by wpn_worker_publish_jobs{state="failed"}. On the job, so it
    // overrides the consumer Worker's own removeOnFail.
    removeOnFail: false,
  },
  [Q.Dead]: {
    attempts: 1,
    // Dead letters are waiting jobs no worker takes: they stay until replayed (each is the only copy of a job that
    // could not be applied), never trimmed by age or count. These apply only if one is ever completed or failed.
    removeOnComplete: { age: 30 * 24 * 3_600 },
    removeOnFail: { age: 30 * 24 * 3_600 },
  },
};
