import type { ParsedNotification, UpsertResult } from "@wpn/db";
import { APPLY_JOB_NAME, type ApplyJob } from "@wpn/queue";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { WorkerError } from "../errors.ts";
import { jobEnqueuer } from "./enqueue.ts";
import { GroupCommit } from "./group-commit.ts";

export interface ParseBatcherOptions {
  /** Records a batch in one statement, results in input order: `upsertParsedNotifications` of @wpn/db. */
  upsert(rows: ParsedNotification[]): Promise<UpsertResult[]>;
  /** Adds a batch's apply jobs in one Redis round trip (job id = notification id); rejects with QUEUE_UNAVAILABLE. */
  enqueueApply(jobs: ApplyJob[]): Promise<void>;
  /** Largest batch: bounds the statement's parameter (each row carries its raw body, ~1–2 KiB). */
  maxBatchSize: number;
  /** Batches between "statement sent" and "apply jobs added" at once; each holds a pooled connection for its statement. */
  maxInFlight: number;
  /** Told the size of every batch sent, row-by-row retries included: one call per statement (a metric). */
  onFlush?(size: number): void;
}

interface Commit {
  row: ParsedNotification;
  apply: ApplyJob | null;
}

/**
 * Group commit for the parse stage (scheduling, failures and the row-by-row fallback: GroupCommit). Concurrent
 * parse jobs of one process each open their notification on their own, then `commit` the row to record and the
 * apply job to enqueue; the batcher records them together:
 *   1. ONE `upsert` statement for the batch (one PostgreSQL round trip);
 *   2. ONE `enqueueApply` (one Redis round trip) with the apply jobs of the rows that are still to be applied:
 *      a row asked as PROCESSING and saved as PROCESSING (not settled before). IGNORED rows and settled ones
 *      (the statement kept their final status) enqueue nothing.
 * Each commit resolves with its own row's result once both steps succeeded. If either step fails, every
 * commit of the batch rejects with that error: BullMQ retries those jobs, which is harmless (the upsert is
 * idempotent, and an apply job already added collapses with its re-add under the same job id); a permanent
 * error is isolated by committing the batch again row by row.
 *
 * A batch never holds the same notification id twice (one statement cannot upsert a row twice): a second
 * commit of an id waits for a later batch. The two may then run concurrently, as two jobs of one id always
 * could; the statement's row lock orders them.
 */
export class ParseBatcher {
  readonly #options: ParseBatcherOptions;
  readonly #batches: GroupCommit<Commit, UpsertResult>;

  constructor(options: ParseBatcherOptions) {
    this.#options = options;
    this.#batches = new GroupCommit<Commit, UpsertResult>({
      commit: (batch) => this.#record(batch),
      maxBatchSize: options.maxBatchSize,
      maxInFlight: options.maxInFlight,
      keyOf: (commit) => commit.row.id,
      ...(options.onFlush ? { onFlush: options.onFlush } : {}),
    });
  }

  /**
   * Records `row` and, when it is saved as PROCESSING as asked, enqueues `apply` (null for a row with nothing
   * to apply). Resolves with the row's upsert result.
   */
  commit(row: ParsedNotification, apply: ApplyJob | null): Promise<UpsertResult> {
    return this.#batches.submit({ row, apply });
  }

  /** The statement, then the apply jobs of the rows left PROCESSING; one result per row, in batch order. */
  async #record(batch: Commit[]): Promise<UpsertResult[]> {
    const results = await this.#options.upsert(batch.map((c) => c.row));
    if (results.length !== batch.length) {
      throw WorkerError.of(
        "INTERNAL",
        `upsert of ${batch.length} notification(s) answered ${results.length} result(s)`,
      );
    }
    const jobs: ApplyJob[] = [];
    batch.forEach(({ row, apply }, i) => {
      if (apply !== null && row.status === "PROCESSING" && results[i]?.status === "PROCESSING") jobs.push(apply);
    });
    if (jobs.length > 0) await this.#options.enqueueApply(jobs);
    return results;
  }
}

/**
 * `enqueueApply` for a ParseBatcher: the apply jobs of a batch in one script call (`jobEnqueuer`), job id =
 * notification id. `redis` is the connection `queue` was created with.
 */
export function applyEnqueuer(queue: Queue, redis: Redis): (jobs: ApplyJob[]) => Promise<void> {
  const enqueue = jobEnqueuer(queue, redis);
  return async (jobs) => {
    await enqueue(jobs.map((job) => ({ name: APPLY_JOB_NAME, data: job, jobId: job.notificationId })));
  };
}
