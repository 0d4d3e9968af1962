import type { Logger } from "pino";
import { oneLine } from "./errors.ts";
import { LogThrottle } from "./log-throttle.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** Least time between two WORKER_ERROR lines of one queue and kind, ms; the ones in between are counted, not logged. */
export const WORKER_ERROR_REPEAT_MS = 10_000;

/**
 * The WORKER_ERROR log of a process: a BullMQ Worker's `error` event that is neither Redis being away (RedisOutageLog)
 * nor a lost lock. Each is an alert (error level: a Redis that refuses the Workers' writes — `maxmemory` reached under
 * noeviction, a demoted primary — does not come right by waiting), but the Worker's main loop retries at once, and a
 * Redis refusing every write failed it thousands of times a second, each one a line. Per queue and kind of error (its
 * first word: `OOM`, `READONLY`, `MASTERDOWN`, `ERR`…) the first is logged at once, the next ones at most every
 * WORKER_ERROR_REPEAT_MS with the number left out (`suppressed`); every one counts in
 * `wpn_worker_errors_total{queue,code="WORKER_ERROR"}`.
 */
export class WorkerErrorLog {
  /** One throttle per queue and kind: a kind of error first met is logged at once, whatever another one repeats. */
  readonly #lines = new Map<string, LogThrottle>();

  constructor(
    private readonly log: Logger,
    private readonly metrics: WorkerMetrics,
  ) {}

  failed(queue: string, error: Error): void {
    this.metrics.errors.inc({ queue, code: "WORKER_ERROR" });
    const key = `${queue} ${/^\S*/.exec(error.message)?.[0] ?? ""}`;
    let lines = this.#lines.get(key);
    if (lines === undefined) {
      lines = new LogThrottle(WORKER_ERROR_REPEAT_MS);
      this.#lines.set(key, lines);
    }
    const suppressed = lines.take();
    if (suppressed === undefined) return;
    this.log.error({ queue, code: "WORKER_ERROR", err: oneLine(error), suppressed }, "worker error");
  }
}
