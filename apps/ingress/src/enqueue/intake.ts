import { isNotificationId, NOTIFICATION_ID_MAX_LENGTH, type ParseJob } from "@wpn/queue";
import type { Redis } from "ioredis";
import { IngressError } from "../errors.ts";
import type { IngressMetrics } from "../metrics.ts";
import type { EnqueueBatcher, SubmitOutcome } from "./batcher.ts";

/** An accept waiting for Redis: settled by the batcher's answer or by its deadline, whichever comes first. */
interface Waiter {
  /** `performance.now()` ms. */
  deadline: number;
  settled: boolean;
  reject(error: unknown): void;
}

/**
 * The one way a verified notification enters the queue: bounded in time and fail-fast when Redis is known to
 * be down. Resolves only when the job (or an earlier receipt of it) is confirmed by Redis; otherwise throws
 * an IngressError with a 503 code, so WeChat resends. A job confirmed after the timeout fired is not lost and
 * not doubled: the resend finds its receipt or its jobId.
 *
 * One timer for all waiting accepts instead of one per request (at thousands of requests per second a timer,
 * a race and their closures per request were measurable): every accept has the same timeout, so deadlines
 * are in submission order and the timer only needs to watch the oldest unsettled one.
 */
export class Intake {
  /** Unsettled accepts, oldest first; settled ones are dropped from the front as they settle. */
  #waiters: Waiter[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly batcher: EnqueueBatcher,
    private readonly redis: Redis,
    /** INGRESS_ENQUEUE_TIMEOUT_MS. */
    private readonly timeoutMs: number,
    private readonly metrics: IngressMetrics,
    /**
     * Why a job Redis confirms would not be kept, as the last queue sample found Redis (QueueSampler.unkeptBecause: a
     * replica, an eviction policy that may evict jobs, or no sample has read them yet on the current connection), or
     * undefined: a 2xx then would promise what Redis does not. A property read, never a Redis round trip: it runs for every notification.
     */
    private readonly unkeptBecause: () => string | undefined = () => undefined,
  ) {}

  /**
   * `leftMs`: what is left of the request's answer budget (ANSWER_BUDGET_MS of routes/budget.ts). A request that
   * spent long before its enqueue (a merchant-table lookup, a certificate download) is bounded by that instead of
   * the configured timeout; it gets a timer of its own, the rest share one.
   */
  accept(api: "v3" | "v2", id: string, data: ParseJob, leftMs = Number.POSITIVE_INFINITY): Promise<SubmitOutcome> {
    // Only an id of our notification forms, `v3|v2:<…>:<…>` (isNotificationId of @wpn/queue): within BullMQ's
    // custom-id rules, which the batch script does not check (one bad id would fail the bulk), and never one of the
    // queue's own key names, whatever the outside part holds. Refused here, alone, before anything reaches Redis.
    if (!isNotificationId(id)) {
      return Promise.reject(
        new IngressError("PAYLOAD_INVALID", `notification id "${id}" is not of the form v3|v2:<…>:<…>`),
      );
    }
    // Nor longer than the workers' job schemas take: queued, it would be acknowledged and then refused by every
    // worker (JOB_INVALID, dead-lettered, and again on every replay), a notification WeChat never resends. The APIv3
    // route builds its job without a schema pass (the hot path), so this is where its id's length is checked.
    if (id.length > NOTIFICATION_ID_MAX_LENGTH) {
      return Promise.reject(
        new IngressError(
          "PAYLOAD_INVALID",
          `notification id "${id}" is ${id.length} characters, over the ${NOTIFICATION_ID_MAX_LENGTH} the workers accept`,
        ),
      );
    }
    // enableOfflineQueue is off, so a command on a dead connection fails anyway; this saves the batch round.
    if (this.redis.status !== "ready") {
      return Promise.reject(new IngressError("QUEUE_UNAVAILABLE", `redis is ${this.redis.status}`));
    }
    // Refused like a Redis that is down (WeChat resends), not only taken out of the balancer by readiness: a process
    // reached all the same (no balancer, one that fails open when every process is unready) must not answer 2xx.
    const unkept = this.unkeptBecause();
    if (unkept !== undefined) return Promise.reject(new IngressError("QUEUE_UNAVAILABLE", unkept));
    const boundMs = Math.max(0, Math.min(this.timeoutMs, leftMs));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { deadline: performance.now() + this.timeoutMs, settled: false, reject };
      this.#waiters.push(waiter);
      this.#timer ??= setTimeout(() => this.#expire(), this.timeoutMs);
      const own =
        boundMs < this.timeoutMs
          ? setTimeout(() => {
              if (waiter.settled) return;
              this.#settle(waiter);
              reject(new IngressError("QUEUE_TIMEOUT", `no confirmation from Redis within the ${boundMs} ms left`));
            }, boundMs)
          : undefined;
      this.batcher.submit(id, data).then(
        (outcome) => {
          clearTimeout(own);
          if (waiter.settled) return;
          this.#settle(waiter);
          if (outcome.kind === "duplicate") this.metrics.dedupeHits.inc({ api, via: outcome.via });
          resolve(outcome);
        },
        (error: unknown) => {
          clearTimeout(own);
          if (waiter.settled) return;
          this.#settle(waiter);
          reject(error);
        },
      );
    });
  }

  #settle(waiter: Waiter): void {
    waiter.settled = true;
    while (this.#head < this.#waiters.length && this.#waiters[this.#head]?.settled) this.#head += 1;
    if (this.#head === this.#waiters.length) {
      this.#waiters = [];
      this.#head = 0;
      clearTimeout(this.#timer);
      this.#timer = undefined;
    } else if (this.#head > 1024 && this.#head * 2 > this.#waiters.length) {
      this.#waiters = this.#waiters.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Fails every accept past its deadline, then watches the oldest one left. */
  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (let next = this.#waiters[this.#head]; next !== undefined; next = this.#waiters[this.#head]) {
      if (!next.settled) {
        if (next.deadline > now) {
          this.#timer = setTimeout(() => this.#expire(), next.deadline - now);
          return;
        }
        next.reject(new IngressError("QUEUE_TIMEOUT", `no confirmation from Redis within ${this.timeoutMs} ms`));
        next.settled = true;
      }
      this.#head += 1;
    }
    this.#waiters = [];
    this.#head = 0;
  }
}
