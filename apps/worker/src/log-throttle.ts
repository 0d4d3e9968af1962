/**
 * At most one log line per `intervalMs` for a condition that repeats at the rate of the traffic or of a retry loop (a
 * full notify.publish, a relay pass failing during an outage, a Redis connection error): the occurrences in between are
 * counted, and the next line says how many were left out (`suppressed`). The metrics still count every occurrence.
 */
export class LogThrottle {
  /** Date.now() of the last line; -Infinity: the next occurrence is logged at once. */
  #lastLine = Number.NEGATIVE_INFINITY;
  #suppressed = 0;

  constructor(private readonly intervalMs: number) {}

  /**
   * One occurrence: undefined when it is not to be logged (counted), else the number left out since the previous
   * line — the caller logs it now, as `suppressed`.
   */
  take(now = Date.now()): number | undefined {
    if (now - this.#lastLine < this.intervalMs) {
      this.#suppressed += 1;
      return undefined;
    }
    const suppressed = this.#suppressed;
    this.#lastLine = now;
    this.#suppressed = 0;
    return suppressed;
  }

  /** The condition ended: its next occurrence is a new one's first, logged at once and counting nothing left out. */
  reset(): void {
    this.#lastLine = Number.NEGATIVE_INFINITY;
    this.#suppressed = 0;
  }
}
