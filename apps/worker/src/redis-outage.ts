import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { oneLine } from "./errors.ts";
import { LogThrottle } from "./log-throttle.ts";
import type { WorkerMetrics } from "./metrics.ts";

/**
 * Node's codes for a connection to Redis that cannot be made or was cut: refused or reset (Redis stopped or
 * restarting), a connect or socket timeout (ioredis's connectTimeout sets ETIMEDOUT too), a write on a closed socket,
 * a name that does not resolve (yet: a container restarting, a DNS blip), an unreachable host or network.
 */
const CONNECTION_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * Whether a BullMQ Worker's `error` event only says Redis cannot be used right now, the way a restart or an outage
 * does, and ends by itself when Redis is back: a connection error above (on an AggregateError too, which carries the
 * code of its attempts), ioredis's `Connection is closed.` (a command on a connection being re-established), or the
 * reply LOADING (a restarted Redis reading its dataset: it refuses commands until done). Not MASTERDOWN nor READONLY:
 * those come from a replica, i.e. the address leads to a node this worker cannot write to, which waiting does not
 * fix (a failover the address has not followed, a misconfiguration): they stay WORKER_ERROR, an alert.
 */
export function isRedisUnavailable(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
  return /^Connection is closed\.?$/.test(error.message) || /^LOADING\b/.test(error.message);
}

/** Least time between two REDIS_ERROR lines of one outage, ms; the failures in between are counted, not logged. */
export const REDIS_ERROR_REPEAT_MS = 10_000;
/**
 * Time without a failure, from any connection, before the outage is over (REDIS_RECOVERED), ms. Longer than the
 * connections' longest wait between reconnect attempts (2 s, @wpn/queue's retryStrategy): each connection
 * reconnects on its own, and one still failing must not end the outage and begin another at each of its attempts.
 */
const REDIS_QUIET_MS = 3_000;
/** Wait between two checks that Redis answers again, ms. */
const REDIS_CHECK_MS = 1_000;

/**
 * The log of a Redis outage in one process, however many connections meet it. ioredis reports every failed
 * reconnect attempt of each connection, and each BullMQ Worker re-emits those of its own (blocking) connection and
 * its failed commands: tens of lines per connection and minute. Here the first failure of an outage is a warning
 * (REDIS_ERROR), further ones are counted and logged at most every REDIS_ERROR_REPEAT_MS with the number left out
 * (`suppressed`), and the end is a warning of its own (REDIS_RECOVERED, with the outage's length and failures) once a
 * PING answers and no connection failed for REDIS_QUIET_MS. Every failure counts in `wpn_worker_redis_errors_total`,
 * logged or not.
 */
export class RedisOutageLog {
  readonly #log: Logger;
  readonly #metrics: WorkerMetrics;
  readonly #redis: Redis;
  /** Date.now() of the outage's first failure; null: no outage. */
  #since: number | null = null;
  #lastFailure = 0;
  /** Failures of this outage. */
  #failures = 0;
  /** Its REDIS_ERROR lines; the first failure of an outage is always logged. */
  readonly #lines = new LogThrottle(REDIS_ERROR_REPEAT_MS);
  #checking = false;
  #closed = false;

  constructor(options: { log: Logger; metrics: WorkerMetrics; redis: Redis }) {
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#redis = options.redis;
  }

  /** A failure of a connection to Redis; `source`: `connection` (the process's own) or the Worker's queue. */
  failed(source: string, error: unknown): void {
    this.#metrics.redisErrors.inc({ source });
    const now = Date.now();
    this.#lastFailure = now;
    this.#failures = this.#since === null ? 1 : this.#failures + 1;
    if (this.#since === null) {
      this.#since = now;
      this.#lines.reset();
    }
    const suppressed = this.#lines.take(now);
    if (suppressed === undefined) return;
    this.#log.warn({ code: "REDIS_ERROR", source, err: oneLine(error), suppressed }, "redis connection error");
    if (!this.#checking) void this.#checkRecovered();
  }

  /** Stops the recovery check (the process is closing): a failure it then meets is the close's, not logged. */
  close(): void {
    this.#closed = true;
  }

  /**
   * Until the outage is over: PING (on the worker connection, a PING waits for the reconnect; one refused with
   * LOADING is a failure of the outage), then the outage is over once no connection failed for REDIS_QUIET_MS.
   */
  async #checkRecovered(): Promise<void> {
    this.#checking = true;
    try {
      while (!this.#closed && this.#since !== null) {
        await new Promise((resolve) => setTimeout(resolve, REDIS_CHECK_MS).unref());
        try {
          await this.#redis.ping();
        } catch (error) {
          if (this.#closed) return;
          this.failed("connection", error);
          continue;
        }
        if (this.#closed || Date.now() - this.#lastFailure < REDIS_QUIET_MS) continue;
        this.#log.warn(
          { code: "REDIS_RECOVERED", ms: this.#lastFailure - this.#since, failures: this.#failures },
          "Redis answers again",
        );
        this.#since = null;
      }
    } finally {
      this.#checking = false;
    }
  }
}
