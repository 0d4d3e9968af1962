import type { Config } from "@wpn/config";
import type { Db, DbPool } from "@wpn/db";
import { ALL_QUEUES, createQueue, type QueueName } from "@wpn/queue";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { DashboardCookies } from "./auth/cookies.ts";
import type { LoginRateLimiter } from "./auth/rate-limit.ts";
import type { SessionCodec } from "./auth/session.ts";
import type { DashboardUser } from "./auth/users.ts";
import type { DashboardMetrics } from "./metrics.ts";

export type Queues = Readonly<Record<QueueName, Queue>>;

/** Everything a route needs, built once by buildApp and passed to each route module. */
export interface DashboardContext {
  readonly config: Config;
  readonly db: Db;
  /** The session checks' own connections (`openSessionCheckPool`), ended when the app closes. */
  readonly sessionChecks: DbPool;
  /** Admin connection (shared by the Queue objects; BullMQ does not close a connection it was given). */
  readonly redis: Redis;
  readonly queues: Queues;
  readonly prefix: string;
  readonly users: ReadonlyMap<string, DashboardUser>;
  readonly sessions: SessionCodec;
  /** Names and attributes of the cookies (`__Host-` when secure). */
  readonly cookies: DashboardCookies;
  readonly loginLimiter: LoginRateLimiter;
  readonly metrics: DashboardMetrics;
  readonly now: () => Date;
}

export function createQueues(redis: Redis, prefix: string): Queues {
  return Object.fromEntries(ALL_QUEUES.map((name) => [name, createQueue(name, redis, prefix)])) as Record<
    QueueName,
    Queue
  >;
}
