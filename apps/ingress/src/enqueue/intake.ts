import type { ParseJob } from "@wpn/queue";
import type { Redis } from "ioredis";
import { IngressError } from "../errors.ts";
import type { IngressMetrics } from "../metrics.ts";
import type { EnqueueBatcher, SubmitOutcome } from "./batcher.ts";

/**
 * BullMQ refuses some custom job ids (bullmq Job#validateOptions): integer-looking ids, and ids with ':'
 * unless they have exactly three ':'-separated parts (our `v2:pay:<id>`). The batch script adds jobs without
 * BullMQ's client-side checks, and the worker's apply jobs reuse these ids, so they are refused here, alone,
 * before they reach Redis.
 */
export function isUsableJobId(id: string): boolean {
  if (`${Number.parseInt(id, 10)}` === id) return false;
  return !id.includes(":") || id.split(":").length === 3;
}

/**
 * The one way a verified notification enters the queue: bounded in time and fail-fast when Redis is known to
 * be down. Resolves only when the job (or an earlier receipt of it) is confirmed by Redis; otherwise throws
 * an IngressError with a 503 code, so WeChat resends. A job confirmed after the timeout fired is not lost and
 * not doubled: the resend finds its receipt or its jobId.
 */
export class Intake {
  constructor(
    private readonly batcher: EnqueueBatcher,
    private readonly redis: Redis,
    /** INGRESS_ENQUEUE_TIMEOUT_MS. */
    private readonly timeoutMs: number,
    private readonly metrics: IngressMetrics,
  ) {}

  async accept(api: "v3" | "v2", id: string, data: ParseJob): Promise<SubmitOutcome> {
    if (!isUsableJobId(id)) throw new IngressError("PAYLOAD_INVALID", `notification id "${id}" is not a usable job id`);
    // enableOfflineQueue is off, so a command on a dead connection fails anyway; this saves the batch round.
    if (this.redis.status !== "ready") throw new IngressError("QUEUE_UNAVAILABLE", `redis is ${this.redis.status}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new IngressError("QUEUE_TIMEOUT", `no confirmation from Redis within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
    });
    try {
      const outcome = await Promise.race([this.batcher.submit(id, data), timeout]);
      if (outcome.kind === "duplicate") this.metrics.dedupeHits.inc({ api, via: outcome.via });
      return outcome;
    } finally {
      clearTimeout(timer);
    }
  }
}
