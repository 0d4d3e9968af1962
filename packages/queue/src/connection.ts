import { Redis, type RedisOptions } from "ioredis";

/**
 * How a connection is used decides its settings (BullMQ's going-to-production guide):
 * - `producer` (ingress): `enableOfflineQueue: false` and one retry per command, so a Redis outage makes
 *   `add` fail at once and the ingress answers 503 (WeChat then resends) instead of queueing in memory.
 * - `worker`: `maxRetriesPerRequest: null`, required by BullMQ's blocking commands; reconnects forever.
 * - `admin` (dashboard, CLI, tests): like `worker`, but gives up on a command after a few retries.
 * Auto-pipelining stays off: for BullMQ workers on a low-latency link it costs throughput (measured here before the
 * project started: 10.2k against 19.7k jobs/s, −48%; chasquimq reports −38%; see also taskforcesh/bullmq#457).
 * Every role reconnects on a READONLY error: after a failover that demotes the primary without closing its
 * clients, the old connection stays open to a replica that refuses every write; a new connection finds the new
 * primary wherever the address now leads (DNS, a proxy). The command that failed is not resent. At most one
 * such reconnect per second per connection: while the address still leads to the replica, ioredis would otherwise
 * reconnect after every refused command (its backoff restarts at each successful connect).
 */
export type ConnectionRole = "producer" | "worker" | "admin";

/** Least time between two reconnects caused by READONLY errors on one connection, ms. */
const READONLY_RECONNECT_INTERVAL_MS = 1_000;

/** `performance.now()` of each connection's last READONLY reconnect, keyed by the connection's options object. */
const lastReadonlyReconnect = new WeakMap<object, number>();

/**
 * ioredis calls it as `this.options.reconnectOnError(err)`: `this` is the connection's own options object, a new one
 * for each connection and each `duplicate()` (BullMQ's blocking connections), so each keeps its own interval.
 */
function reconnectOnReadonly(this: object | undefined, error: Error): boolean {
  if (!error.message.startsWith("READONLY")) return false;
  const key = this ?? reconnectOnReadonly;
  const now = performance.now();
  if (now - (lastReadonlyReconnect.get(key) ?? Number.NEGATIVE_INFINITY) < READONLY_RECONNECT_INTERVAL_MS) return false;
  lastReadonlyReconnect.set(key, now);
  return true;
}

export function createRedisConnection(url: string, role: ConnectionRole, extra: RedisOptions = {}): Redis {
  const common: RedisOptions = {
    connectionName: `wechatpay-notify:${role}`,
    keepAlive: 10_000,
    // Back off 50 ms, 100 ms, … up to 2 s between reconnect attempts; never give up (the process decides).
    retryStrategy: (attempt) => Math.min(attempt * 50, 2_000),
    enableAutoPipelining: false,
    reconnectOnError: reconnectOnReadonly,
  };
  const byRole: Record<ConnectionRole, RedisOptions> = {
    producer: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2_000 },
    worker: { maxRetriesPerRequest: null, enableReadyCheck: false },
    admin: { maxRetriesPerRequest: 3 },
  };
  return new Redis(url, { ...common, ...byRole[role], ...extra });
}
