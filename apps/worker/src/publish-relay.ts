import { moveOverflowEvents, type OverflowRow, type PrismaClient } from "@wpn/db";
import { type BulkEntry, type CeilingAdder, decodeJob, publishJobName, publishJobSchema } from "@wpn/queue";
import type { Logger } from "pino";
import { oneLine } from "./errors.ts";
import { LogThrottle } from "./log-throttle.ts";
import type { WorkerMetrics } from "./metrics.ts";

export interface PublishRelayOptions {
  prisma: PrismaClient;
  /** Adds to notify.publish while fewer than `maxWaiting` jobs wait there (one Redis script: count and add). */
  adder: CeilingAdder;
  /** PUBLISH_MAX_WAITING: the relay fills the queue up to it, never past it. */
  maxWaiting: number;
  log: Logger;
  metrics: WorkerMetrics;
  /** Rows locked and added per transaction. */
  batchSize: number;
  /** Pause between passes, ms. */
  intervalMs: number;
}

/**
 * Moves the events stored in PublishOverflow (workers/publisher.ts: notify.publish was full) back to notify.publish,
 * oldest first, as room frees up: a pass every `intervalMs`, each pass transactions of `batchSize` rows until the table
 * has none left to this relay or the queue is full again. Every worker process runs one (PUBLISH_EVENTS=true): one
 * relay's transaction at a time (moveOverflowEvents; a relay finding another's under way ends its pass), so an event is
 * taken by one relay at a time, oldest first across relays, and a row is deleted only after Redis confirmed its add,
 * in the transaction that locked it. A relay that dies between the two (or whose add outlasts the transaction's 5 s
 * timeout) leaves the row, which the next one adds under the same job id (the event's notificationId): BullMQ finds
 * the job while it keeps it and adds nothing (the row is then deleted); once the consumer completed it and BullMQ
 * removed it, it is added and delivered again (at least once). A consumer must not rely on the order of events anyway
 * (apps/worker/README.md, "Events").
 */
export class PublishRelay {
  readonly #o: PublishRelayOptions;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> | undefined;
  #closed = false;
  /**
   * Rows this process reported as not events of their id: each is reported once (it stays until fixed or deleted by
   * hand, so every pass meets it again). As many as such rows: a handful.
   */
  readonly #reported = new Set<bigint>();
  readonly #failureLines = new LogThrottle(RELAY_FAILED_LOG_INTERVAL_MS);

  constructor(options: PublishRelayOptions) {
    this.#o = options;
  }

  /** Starts the passes; the first after `intervalMs`. */
  start(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#pass = this.#tick().finally(() => {
        this.#pass = undefined;
        this.#timer = undefined;
        this.start();
      });
    }, this.#o.intervalMs);
  }

  /**
   * Stops the passes, waiting for the one running to end after its batch in flight (its transaction commits or rolls
   * back; no row is lost), not for the rows left: a full table would otherwise keep close() for its whole drain.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#pass;
  }

  /**
   * One pass: moves stored events to notify.publish until none is left to this relay, the queue is full or the relay
   * closes. Resolves with the number moved; rejects when a step failed (its rows stay, for the next pass).
   */
  async drain(): Promise<number> {
    const { prisma, batchSize, metrics, log } = this.#o;
    let moved = 0;
    // Ids start at 1. Each step starts after the last row of the one before, so each row is met once per pass.
    let after = 0n;
    try {
      for (;;) {
        let full = false;
        const step = await moveOverflowEvents(prisma, batchSize, after, async (rows) => {
          const placed = await this.#place(rows);
          full = placed.full;
          return placed.ids;
        });
        // Another relay's step is under way: it goes on from the oldest row; this pass ends, leaving the flag to it.
        if (step.busy) return moved;
        moved += step.moved;
        metrics.publishDrained.inc(step.moved);
        after = step.lastId ?? after;
        // Closing: the batch in flight is committed; the rest waits for the next worker, not for this one's close.
        if (full || this.#closed) return moved;
        if (step.locked < batchSize) {
          // Every row was offered room: new events need not wait behind stored ones any more (createCeilingAdder).
          // Rows it leaves (not events of their id) do not count.
          await this.#o.adder.storedDrained();
          return moved;
        }
      }
    } finally {
      if (moved > 0) {
        log.info({ code: "PUBLISH_OVERFLOW_DRAINED", events: moved }, "stored events moved to notify.publish");
      }
    }
  }

  async #tick(): Promise<void> {
    try {
      await this.drain();
      // A pass went through: the next failure is a new outage's first, logged at once.
      this.#failureLines.reset();
    } catch (error) {
      this.#o.metrics.publishRelayFailures.inc();
      const suppressed = this.#failureLines.take();
      if (suppressed === undefined) return;
      this.#o.log.warn(
        { code: "PUBLISH_RELAY_FAILED", err: oneLine(error), suppressed },
        "PublishOverflow relay pass failed; its rows stay for the next pass",
      );
    }
  }

  /**
   * Adds `rows` in order while there is room; answers the ids of the rows placed (to delete) and whether the queue
   * was full. A row whose payload is not an event of its own id (edited by hand, or written by a release whose events
   * this one cannot read) is left in the table and reported once per process (PUBLISH_RELAY_FAILED), not added nor
   * dropped.
   */
  async #place(rows: readonly OverflowRow[]): Promise<{ ids: bigint[]; full: boolean }> {
    const valid: { row: OverflowRow; entry: BulkEntry }[] = [];
    for (const row of rows) {
      const decoded = decodeJob(publishJobSchema, row.payload);
      if (decoded.ok && decoded.value.notificationId === row.eventId) {
        valid.push({ row, entry: { name: publishJobName(decoded.value.type), id: row.eventId, data: row.payload } });
        continue;
      }
      if (this.#reported.has(row.id)) continue;
      this.#reported.add(row.id);
      this.#o.metrics.publishRelayFailures.inc();
      this.#o.log.error(
        {
          code: "PUBLISH_RELAY_FAILED",
          eventId: row.eventId,
          err: decoded.ok ? "payload of another notificationId" : decoded.message,
        },
        "stored event is not a publish event of its id; left in PublishOverflow",
      );
    }
    const { placed } = await this.#o.adder.add(
      valid.map((v) => v.entry),
      this.#o.maxWaiting,
      Date.now(),
      "stored",
    );
    return { ids: valid.slice(0, placed).map((v) => v.row.id), full: placed < valid.length };
  }
}

/**
 * Least time between two lines of failed passes, ms. While PostgreSQL or Redis refuses connections every pass fails at
 * once, a second apart: a line names one failure and `suppressed`, the failed passes since the previous line without
 * one; wpn_worker_publish_relay_failures_total counts each.
 */
const RELAY_FAILED_LOG_INTERVAL_MS = 10_000;
