import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { QueueName } from "./names.ts";
import { defaultJobOptions } from "./options.ts";

/**
 * A producer-side Queue for one stage, sharing the caller's connection (BullMQ does not close a connection
 * it was given). The events stream is capped: nothing here relies on old events, and uncapped streams were a
 * cause of Redis memory growth (bullmq#110, #1070).
 */
export function createQueue(name: QueueName, connection: Redis, prefix: string): Queue {
  return new Queue(name, {
    connection,
    prefix,
    defaultJobOptions: defaultJobOptions[name],
    streams: { events: { maxLen: 2_000 } },
  });
}
