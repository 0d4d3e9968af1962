import type { ParsedNotification, UpsertResult } from "@wpn/db";
import { APPLY_JOB_NAME, type ApplyJob } from "@wpn/queue";
import type { Queue } from "bullmq";
import { oneLine, toWorkerError, WorkerError } from "../errors.ts";

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

interface Pending {
  row: ParsedNotification;
  apply: ApplyJob | null;
  resolve(result: UpsertResult): void;
  reject(error: unknown): void;
}

/**
 * Group commit for the parse stage. Concurrent parse jobs of one process each open their notification on
 * their own, then `commit` the row to record and the apply job to enqueue; the batcher records them together:
 *   1. ONE `upsert` statement for the batch (one PostgreSQL round trip);
 *   2. ONE `enqueueApply` (one Redis round trip) with the apply jobs of the rows that are still to be applied:
 *      a row asked as PROCESSING and saved as PROCESSING (not settled before). IGNORED rows and settled ones
 *      (the statement kept their final status) enqueue nothing.
 * Each commit resolves with its own row's result once both steps succeeded. If either step fails, every
 * commit of the batch rejects with that error: BullMQ retries those jobs, which is harmless (the upsert is
 * idempotent, and an apply job already added collapses with its re-add under the same job id). One exception:
 * a permanent error (PostgreSQL refused the data of some row, policy `stop`) would dead-letter the whole
 * batch, so a batch of more than one that fails that way is committed again row by row, and only the rows at
 * fault fail.
 *
 * When to send: at most `maxInFlight` batches are between step 1 and the end of step 2 at any time. While
 * they are, new commits wait and join the next batch, so under load batches grow by themselves (fewer round
 * trips per job), and when idle a commit is sent on the next turn of the event loop (`setImmediate`, after
 * every job started in the same I/O poll had its turn). A batch never exceeds `maxBatchSize`.
 * A batch never holds the same notification id twice (one statement cannot upsert a row twice): a second
 * commit of an id waits for a later batch. The two may then run concurrently, as two jobs of one id always
 * could; the statement's row lock orders them.
 */
export class ParseBatcher {
  readonly #options: ParseBatcherOptions;
  /** In commit order. */
  #pending: Pending[] = [];
  #scheduled = false;
  /** Batches in steps 1–2 (they hold a slot). */
  #inFlight = 0;

  constructor(options: ParseBatcherOptions) {
    this.#options = options;
  }

  /**
   * Records `row` and, when it is saved as PROCESSING as asked, enqueues `apply` (null for a row with nothing
   * to apply). Resolves with the row's upsert result.
   */
  commit(row: ParsedNotification, apply: ApplyJob | null): Promise<UpsertResult> {
    return new Promise<UpsertResult>((resolve, reject) => {
      this.#pending.push({ row, apply, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#pump();
        });
      }
    });
  }

  /** Starts batches while commits wait and slots are free. */
  #pump(): void {
    const { maxBatchSize, maxInFlight } = this.#options;
    while (this.#pending.length > 0 && this.#inFlight < maxInFlight) {
      const batch: Pending[] = [];
      const ids = new Set<string>();
      const later: Pending[] = [];
      for (const pending of this.#pending) {
        if (batch.length < maxBatchSize && !ids.has(pending.row.id)) {
          batch.push(pending);
          ids.add(pending.row.id);
        } else {
          later.push(pending);
        }
      }
      this.#pending = later;
      this.#inFlight += 1;
      // #flush settles every commit of the batch itself and never rejects.
      void this.#flush(batch).then(() => {
        this.#inFlight -= 1;
        this.#pump();
      });
    }
  }

  /** Steps 1–2 for one batch; settles each of its commits. */
  async #flush(batch: Pending[]): Promise<void> {
    this.#options.onFlush?.(batch.length);
    let results: UpsertResult[];
    try {
      results = await this.#record(batch);
    } catch (error) {
      if (batch.length > 1 && toWorkerError(error).policy === "stop") {
        for (const pending of batch) await this.#flush([pending]);
        return;
      }
      for (const pending of batch) pending.reject(error);
      return;
    }
    // #record checked that there is one result per row.
    for (const [i, pending] of batch.entries()) pending.resolve(results[i] as UpsertResult);
  }

  /** The statement, then the apply jobs of the rows left PROCESSING; one result per row, in batch order. */
  async #record(batch: Pending[]): Promise<UpsertResult[]> {
    const results = await this.#options.upsert(batch.map((p) => p.row));
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
 * `enqueueApply` for a ParseBatcher: one `addBulk` (one MULTI of BullMQ add scripts, one round trip) on the
 * apply queue, job id = notification id, the queue's default job options as with `add`. A Redis failure
 * becomes a retryable QUEUE_UNAVAILABLE.
 */
export function applyEnqueuer(queue: Queue): (jobs: ApplyJob[]) => Promise<void> {
  return async (jobs) => {
    try {
      await queue.addBulk(
        jobs.map((job) => ({ name: APPLY_JOB_NAME, data: job, opts: { jobId: job.notificationId } })),
      );
    } catch (error) {
      throw WorkerError.of(
        "QUEUE_UNAVAILABLE",
        `enqueue of ${jobs.length} job(s) to ${queue.name} failed: ${oneLine(error)}`,
        { cause: error },
      );
    }
  };
}
