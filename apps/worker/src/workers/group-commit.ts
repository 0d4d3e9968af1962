import { toWorkerError, WorkerError } from "../errors.ts";

export interface GroupCommitOptions<I, R> {
  /** Commits a batch of items together; resolves with one result per item, in batch order. */
  commit(items: I[]): Promise<R[]>;
  /** Largest batch. */
  maxBatchSize: number;
  /** Batches being committed at once; each holds a pooled connection for its statement. */
  maxInFlight: number;
  /**
   * Items with the same key never share a batch (for a `commit` that cannot take one key twice): the later
   * one waits for a later batch. Without it, a batch takes items in submit order whatever they are.
   */
  keyOf?(item: I): string;
  /** Told the size of every batch committed, one-at-a-time retries included: one call per `commit` (a metric). */
  onFlush?(size: number): void;
}

interface Pending<I, R> {
  item: I;
  resolve(result: R): void;
  reject(error: unknown): void;
}

/**
 * Group commit: concurrent jobs of one process each `submit` an item, and the items are committed together,
 * one `commit` call (one statement, one round trip) per batch. Each submit resolves with its own item's result.
 *
 * When to commit: at most `maxInFlight` batches are being committed at any time. While they are, new items
 * wait and join the next batch, so under load batches grow by themselves (fewer round trips per job), and when
 * idle an item is committed on the next turn of the event loop (`setImmediate`, after every job started in the
 * same I/O poll had its turn). A batch never exceeds `maxBatchSize`.
 *
 * When `commit` fails, every submit of the batch rejects with that error: the jobs are retried by the queue,
 * which a committer must make harmless (idempotent effects). One exception: a permanent error (policy `stop`
 * of toWorkerError: PostgreSQL refused the data of some item) would dead-letter the whole batch, so a batch of
 * more than one that fails that way is committed again one item at a time, in batch order, and only the items
 * at fault fail.
 */
export class GroupCommit<I, R> {
  readonly #options: GroupCommitOptions<I, R>;
  /** In submit order. */
  #pending: Pending<I, R>[] = [];
  #scheduled = false;
  /** Batches being committed (they hold a slot). */
  #inFlight = 0;

  constructor(options: GroupCommitOptions<I, R>) {
    this.#options = options;
  }

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#pump();
        });
      }
    });
  }

  /** Starts batches while items wait and slots are free. */
  #pump(): void {
    const { maxBatchSize, maxInFlight, keyOf } = this.#options;
    while (this.#pending.length > 0 && this.#inFlight < maxInFlight) {
      let batch: Pending<I, R>[];
      if (keyOf === undefined) {
        batch = this.#pending.splice(0, maxBatchSize);
      } else {
        batch = [];
        const keys = new Set<string>();
        const later: Pending<I, R>[] = [];
        for (const pending of this.#pending) {
          const key = keyOf(pending.item);
          if (batch.length < maxBatchSize && !keys.has(key)) {
            batch.push(pending);
            keys.add(key);
          } else {
            later.push(pending);
          }
        }
        this.#pending = later;
      }
      this.#inFlight += 1;
      // #flush settles every submit of the batch itself and never rejects.
      void this.#flush(batch).then(() => {
        this.#inFlight -= 1;
        this.#pump();
      });
    }
  }

  /** Commits one batch; settles each of its submits. */
  async #flush(batch: Pending<I, R>[]): Promise<void> {
    this.#options.onFlush?.(batch.length);
    let results: R[];
    try {
      results = await this.#options.commit(batch.map((p) => p.item));
      if (results.length !== batch.length) {
        throw WorkerError.of("INTERNAL", `commit of ${batch.length} item(s) answered ${results.length} result(s)`);
      }
    } catch (error) {
      if (batch.length > 1 && toWorkerError(error).policy === "stop") {
        for (const pending of batch) await this.#flush([pending]);
        return;
      }
      for (const pending of batch) pending.reject(error);
      return;
    }
    // Checked above: one result per item.
    for (const [i, pending] of batch.entries()) pending.resolve(results[i] as R);
  }
}
