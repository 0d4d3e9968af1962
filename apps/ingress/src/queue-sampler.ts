import type { Queue } from "bullmq";
import type { Logger } from "pino";
import type { IngressMetrics } from "./metrics.ts";

export interface QueueSnapshot {
  /** Last sampled waiting count; undefined until a sample succeeded. */
  waiting: number | undefined;
  /** INGRESS_QUEUE_WAITING_CEILING. */
  ceiling: number;
  /** waiting > ceiling. The ingress keeps accepting: WeChat's resends would only add load. */
  backpressure: boolean;
  /** The last sample succeeded (what /health/ready calls "Redis reachable"). */
  redisUp: boolean;
  /** ms since the epoch of the last successful sample. */
  lastOkAt: number | undefined;
}

/**
 * Samples the parse queue's waiting count every `intervalMs` in the background, so that neither requests
 * nor health probes ever cost a Redis round trip of their own. One sample in flight at a time: a slow
 * Redis cannot pile up samples.
 */
export class QueueSampler {
  #timer: NodeJS.Timeout | undefined;
  #current: Promise<void> | undefined;
  #failuresLogged = 0;
  readonly #snapshot: QueueSnapshot;

  constructor(
    private readonly queue: Queue,
    ceiling: number,
    private readonly metrics: IngressMetrics,
    private readonly logger: Logger,
    private readonly intervalMs = 1_000,
    private readonly clock: () => number = Date.now,
  ) {
    this.#snapshot = { waiting: undefined, ceiling, backpressure: false, redisUp: false, lastOkAt: undefined };
    metrics.queueWaiting.set(-1);
    metrics.queueWaitingCeiling.set(ceiling);
    metrics.backpressure.set(0);
    metrics.redisUp.set(0);
  }

  get snapshot(): Readonly<QueueSnapshot> {
    return this.#snapshot;
  }

  start(): void {
    if (this.#timer) return;
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes a sample that starts after this call (queued behind one in flight, never two at once); never rejects. */
  sample(): Promise<void> {
    const next = (this.#current ?? Promise.resolve()).then(() => this.#sampleOnce());
    const tracked = next.finally(() => {
      if (this.#current === tracked) this.#current = undefined;
    });
    this.#current = tracked;
    return tracked;
  }

  /** The periodic tick: skipped while a sample is in flight, so a slow Redis cannot pile samples up. */
  #tick(): void {
    if (this.#current === undefined) void this.sample();
  }

  async #sampleOnce(): Promise<void> {
    const snapshot = this.#snapshot;
    try {
      const waiting = await this.queue.getWaitingCount();
      snapshot.waiting = waiting;
      snapshot.backpressure = waiting > snapshot.ceiling;
      snapshot.redisUp = true;
      snapshot.lastOkAt = this.clock();
      this.metrics.queueWaiting.set(waiting);
      this.metrics.backpressure.set(snapshot.backpressure ? 1 : 0);
      this.metrics.redisUp.set(1);
      if (this.#failuresLogged > 0) this.logger.info("redis reachable again");
      this.#failuresLogged = 0;
    } catch (error) {
      snapshot.redisUp = false;
      this.metrics.redisUp.set(0);
      // Once per outage, not once per second.
      if (this.#failuresLogged === 0) this.logger.warn({ err: error }, "queue sample failed: redis unreachable");
      this.#failuresLogged += 1;
    }
  }
}
