import { NotReplicatedError, type ParseJob, type ReceiptedAdder } from "@wpn/queue";
import { IngressError } from "../errors.ts";
import type { IngressMetrics } from "../metrics.ts";

/**
 * What became of one delivery: a new job, or a redelivery answered without one — found by its receipt, by a job
 * with its id still in Redis, or collapsed onto a copy waiting in the same batcher.
 */
export type SubmitOutcome = { kind: "enqueued" } | { kind: "duplicate"; via: "receipt" | "job" | "batch" };

export interface BatcherOptions {
  /**
   * Adds a batch of parse jobs with their receipts in one Redis script call (through the producer connection), followed
   * by WAIT when replicas must acknowledge it (INGRESS_REDIS_MIN_REPLICAS).
   */
  adder: ReceiptedAdder;
  /** Largest batch (one script call should not grow unbounded). */
  maxBatchSize: number;
  /** Batches sent to Redis and not yet confirmed, at most. */
  maxInFlight: number;
  /** ms since the epoch. */
  clock: () => number;
  metrics: IngressMetrics;
  /**
   * The producer connection as the queue sampler (QueueSampler) vouches for it: `unkeptBecause`, why a job Redis
   * confirms now would not be kept (undefined only once a sample on the current connection has found a master that
   * keeps jobs), and `connectionCloses`, how many times the connection has closed. Property reads, once per batch.
   */
  vouching: { readonly unkeptBecause: string | undefined; readonly connectionCloses: number };
}

interface Pending {
  id: string;
  data: ParseJob;
  /** Deliveries of this id collected while it waited (WeChat's concurrent resends). */
  deliveries: number;
  promise: Promise<SubmitOutcome>;
  resolve(outcome: SubmitOutcome): void;
  reject(error: unknown): void;
}

/**
 * Group commit for parse jobs. Concurrent requests submit their job; the batcher sends waiting jobs to Redis
 * together in ONE script call (`ReceiptedAdder`), which for each id either counts the delivery on an existing
 * receipt or adds the BullMQ job (jobId = notification id) and records its receipt, atomically. Each submit
 * resolves only after Redis confirmed that call, and rejects when the call fails — every request of a failed
 * batch then gets a 503 and WeChat resends (nothing was acknowledged that Redis did not keep). With
 * INGRESS_REDIS_MIN_REPLICAS, a call confirmed by the primary but not by that many replicas fails the same way
 * (QUEUE_NOT_REPLICATED).
 *
 * A batch is acknowledged only when the server that confirmed it is one a queue sample vouched for: it is sent only
 * while the sampler vouches for the current connection, and its answer counts only if it came on that connection.
 * ioredis resends a command written and unanswered when the connection closes on the next one
 * (autoResendUnfulfilledCommands), which may reach another server — a Redis restarted with an eviction policy, a
 * writable replica — that nothing has sampled when it answers; the sampler refuses new notifications from the close
 * until it has, and such a batch is refused the same way (QUEUE_UNAVAILABLE; its jobs and receipts may be on that
 * server: WeChat's resend is refused before reaching Redis until a sample vouches for it, then answered success by
 * the receipt). So are the jobs that waited for a slot across the close, accepted while the previous connection was
 * vouched for. Not done by turning autoResendUnfulfilledCommands off for the producer, which looks simpler: ioredis
 * 6.0 then drops the unanswered commands of a connection that reconnects at its first attempt without ever settling
 * their promises (readyHandler; measured: still pending seconds later), so the batch would hold its in-flight slot
 * for ever and, after `maxInFlight` such reconnects, nothing would be sent again.
 *
 * When to send: at most `maxInFlight` batches are unconfirmed at any time. While they are, new jobs wait and
 * join the next batch, so under load batches grow by themselves (fewer, larger script calls) and when idle a job
 * is sent on the next turn of the event loop (`setImmediate`, after every request read in the same I/O poll
 * was verified). A batch never exceeds `maxBatchSize`. The same id submitted twice while waiting is added once;
 * both submits share the outcome.
 */
export class EnqueueBatcher {
  readonly #options: BatcherOptions;
  #pending = new Map<string, Pending>();
  #scheduled = false;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: BatcherOptions) {
    this.#options = options;
  }

  submit(id: string, data: ParseJob): Promise<SubmitOutcome> {
    const existing = this.#pending.get(id);
    if (existing) {
      existing.deliveries += 1;
      return existing.promise.then((outcome) =>
        outcome.kind === "enqueued" ? { kind: "duplicate", via: "batch" } : outcome,
      );
    }
    let resolve!: (outcome: SubmitOutcome) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<SubmitOutcome>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#pending.set(id, { id, data, deliveries: 1, promise, resolve, reject });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#pump();
      });
    }
    return promise;
  }

  /** Resolves once every submitted job has settled (graceful shutdown, tests). */
  async drain(): Promise<void> {
    this.#pump();
    while (this.#inFlight.size > 0 || this.#pending.size > 0) {
      await Promise.allSettled([...this.#inFlight]);
      this.#pump();
    }
  }

  /** Starts batches while there are jobs waiting and free slots. */
  #pump(): void {
    while (this.#pending.size > 0 && this.#inFlight.size < this.#options.maxInFlight) {
      const batch = this.#takeBatch();
      const run = this.#flush(batch).finally(() => {
        this.#inFlight.delete(run);
        this.#pump();
      });
      this.#inFlight.add(run);
    }
  }

  /**
   * The oldest `maxBatchSize` waiting jobs, leaving the rest in a new Map. The waiting Map is replaced, never
   * emptied with `delete()` while iterating it: that way, under load, V8 promoted 1–1.7 MB of young objects to the
   * old generation per scavenge (one every ~40 ms), against ~4 KB with a new Map per batch (`--trace-gc-nvp`, the
   * batcher alone behind a fake adder), and the mark-compacts that promotion caused were most of the ingress's GC
   * cost (bench/ingress-report.md, sixth session).
   */
  #takeBatch(): Pending[] {
    const waiting = this.#pending;
    this.#pending = new Map();
    if (waiting.size <= this.#options.maxBatchSize) return [...waiting.values()];
    const batch: Pending[] = [];
    for (const [id, pending] of waiting) {
      if (batch.length < this.#options.maxBatchSize) batch.push(pending);
      else this.#pending.set(id, pending);
    }
    return batch;
  }

  async #flush(batch: Pending[]): Promise<void> {
    const { adder, clock, metrics, vouching } = this.#options;
    // The jobs were accepted while a sample vouched for the connection, but may have waited for a slot across a close.
    const unkept = vouching.unkeptBecause;
    if (unkept !== undefined) {
      const error = new IngressError("QUEUE_UNAVAILABLE", `batch of ${batch.length} job(s) not sent: ${unkept}`);
      for (const pending of batch) pending.reject(error);
      return;
    }
    const sentOn = vouching.connectionCloses;
    const started = performance.now();
    metrics.batchSize.observe(batch.length);
    let outcomes: Awaited<ReturnType<ReceiptedAdder["add"]>>;
    try {
      outcomes = await adder.add(batch, clock());
    } catch (cause) {
      // Not replicated (INGRESS_REDIS_MIN_REPLICAS): the primary holds the jobs and receipts, but a failover now could
      // lose them. Refused all the same: a resend to this primary finds the receipt and is answered success without a
      // second job; one after a failover is enqueued afresh on the new primary.
      const notReplicated = cause instanceof NotReplicatedError;
      const seconds = (performance.now() - started) / 1000;
      metrics.enqueueDuration.observe({ result: notReplicated ? "not_replicated" : "error" }, seconds);
      const error = notReplicated
        ? new IngressError("QUEUE_NOT_REPLICATED", `batch of ${batch.length} job(s): ${cause.message}`, { cause })
        : new IngressError("QUEUE_UNAVAILABLE", `enqueue of ${batch.length} job(s) failed`, { cause });
      for (const pending of batch) pending.reject(error);
      return;
    }
    if (vouching.connectionCloses !== sentOn) {
      metrics.enqueueDuration.observe({ result: "reconnected" }, (performance.now() - started) / 1000);
      const error = new IngressError(
        "QUEUE_UNAVAILABLE",
        `batch of ${batch.length} job(s) answered on the connection made after a close, by a server no sample vouched for`,
      );
      for (const pending of batch) pending.reject(error);
      return;
    }
    metrics.enqueueDuration.observe({ result: "ok" }, (performance.now() - started) / 1000);
    batch.forEach((pending, i) => {
      const outcome = outcomes[i];
      if (outcome === undefined) {
        // Cannot happen with the script as written; never acknowledge a job whose fate Redis did not report.
        pending.reject(new IngressError("QUEUE_UNAVAILABLE", `no outcome for job ${i} of ${batch.length}`));
      } else {
        pending.resolve(outcome === "added" ? { kind: "enqueued" } : { kind: "duplicate", via: outcome });
      }
    });
  }
}
