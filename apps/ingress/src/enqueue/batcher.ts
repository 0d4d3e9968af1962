import { PARSE_JOB_NAME, type ParseJob, recordReceipts, touchReceipts } from "@wpn/queue";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { IngressError } from "../errors.ts";
import type { IngressMetrics } from "../metrics.ts";

/** What became of one delivery: a new job, or a redelivery answered without one. */
export type SubmitOutcome = { kind: "enqueued" } | { kind: "duplicate"; via: "receipt" | "batch" };

export interface BatcherOptions {
  queue: Queue;
  /** The producer connection (`enableOfflineQueue: false`): receipts go through it too. */
  redis: Redis;
  /** QUEUE_PREFIX: receipts live at `<prefix>:receipt:<id>`. */
  prefix: string;
  /** INGRESS_DEDUPE_TTL_SECONDS. */
  dedupeTtlSeconds: number;
  /** Largest batch (one pipeline should not grow unbounded). */
  maxBatchSize: number;
  /** Batches allowed between "receipts looked up" and "add confirmed" at the same time. */
  maxInFlight: number;
  /** ms since the epoch. */
  clock: () => number;
  metrics: IngressMetrics;
  logger: Logger;
}

interface Pending {
  id: string;
  data: ParseJob;
  /** Deliveries of this id collected in the current window (WeChat's concurrent resends). */
  deliveries: number;
  promise: Promise<SubmitOutcome>;
  resolve(outcome: SubmitOutcome): void;
  reject(error: unknown): void;
}

/**
 * Group commit for parse jobs. Concurrent requests submit their job; the batcher sends them to Redis together:
 *   1. one script call that looks up (and bumps) the receipt of every id → ids with a receipt are answered at once;
 *   2. one `queue.addBulk` (one pipeline of BullMQ add scripts) with the rest, `jobId` = notification id;
 *   3. after Redis confirmed the add, one script call that records a receipt per id (the requests do not wait
 *      for it: their jobs are already durable).
 * Each submit resolves only after step 2 succeeded for its job (or its receipt was found), and rejects with
 * QUEUE_UNAVAILABLE when a step before that fails — every request of a failed bulk gets a 503.
 *
 * When to send: at most `maxInFlight` batches are between step 1 and the end of step 2 at any time. While
 * they are, new jobs wait and join the next batch, so under load batches grow by themselves (fewer Redis round
 * trips per job) and when idle a job is sent on the next turn of the event loop (`setImmediate`, after every
 * request read in the same I/O poll was verified). A batch never exceeds `maxBatchSize`.
 * The same id submitted twice while waiting is added once; both submits share the outcome.
 */
export class EnqueueBatcher {
  readonly #options: BatcherOptions;
  #pending = new Map<string, Pending>();
  #scheduled = false;
  /** Batches in steps 1–2 (they hold a slot). */
  #sending = 0;
  /** Every unfinished batch, receipts included, for `drain`. */
  readonly #unfinished = new Set<Promise<void>>();

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

  /** Resolves once every submitted job has settled, receipts included (graceful shutdown, tests). */
  async drain(): Promise<void> {
    this.#pump();
    while (this.#unfinished.size > 0 || this.#pending.size > 0) {
      await Promise.allSettled([...this.#unfinished]);
      this.#pump();
    }
  }

  /** Starts batches while there are jobs waiting and free slots. */
  #pump(): void {
    while (this.#pending.size > 0 && this.#sending < this.#options.maxInFlight) {
      const batch: Pending[] = [];
      for (const [id, pending] of this.#pending) {
        batch.push(pending);
        this.#pending.delete(id);
        if (batch.length >= this.#options.maxBatchSize) break;
      }
      this.#sending += 1;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.#sending -= 1;
        this.#pump();
      };
      const run = this.#flush(batch, release).finally(() => {
        release();
        this.#unfinished.delete(run);
      });
      this.#unfinished.add(run);
    }
  }

  /** Steps 1–3 for one batch; calls `release` as soon as step 2 settled, so the next batch need not wait for receipts. */
  async #flush(batch: Pending[], release: () => void): Promise<void> {
    const { queue, redis, prefix, dedupeTtlSeconds, clock, metrics, logger } = this.#options;
    const started = performance.now();
    const observe = (result: "ok" | "error") =>
      metrics.enqueueDuration.observe({ result }, (performance.now() - started) / 1000);
    let misses: Pending[];
    try {
      const hits = await touchReceipts(
        redis,
        prefix,
        batch.map((p) => p.id),
        clock(),
      );
      misses = [];
      batch.forEach((pending, i) => {
        if (hits[i]) pending.resolve({ kind: "duplicate", via: "receipt" });
        else misses.push(pending);
      });
      if (misses.length > 0) {
        metrics.batchSize.observe(misses.length);
        await queue.addBulk(misses.map((p) => ({ name: PARSE_JOB_NAME, data: p.data, opts: { jobId: p.id } })));
      }
    } catch (cause) {
      release();
      observe("error");
      const error = new IngressError("QUEUE_UNAVAILABLE", `enqueue of ${batch.length} job(s) failed`, { cause });
      for (const pending of batch) pending.reject(error);
      return;
    }
    release();
    observe("ok");
    if (misses.length === 0) return;
    // The jobs are durable now: answer at once. The receipts follow on the same connection; until they
    // land (well under a millisecond) a resend is still collapsed by BullMQ's jobId, because the job exists.
    for (const pending of misses) pending.resolve({ kind: "enqueued" });
    try {
      await recordReceipts(
        redis,
        prefix,
        misses.map((p) => ({ id: p.id, deliveries: p.deliveries })),
        clock(),
        dedupeTtlSeconds,
      );
    } catch (error) {
      // Does not un-confirm the jobs. Without a receipt, a resend after the job was removed adds a second job,
      // which the worker's unique notification id absorbs; counted so that it is visible.
      metrics.receiptWriteFailures.inc(misses.length);
      logger.warn({ err: error, jobs: misses.length }, "receipt write failed after enqueue");
    }
  }
}
