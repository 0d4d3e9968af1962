import type { Redis } from "ioredis";

/**
 * Ingress receipts: a small Redis hash per notification id that the ingress writes together with the job
 * (`createReceiptedAdder`, one script call), so that WeChat's resends (for ~24 h) are answered with success without a second job — also after the
 * job itself was completed and removed from Redis, when BullMQ's own `jobId` dedupe no longer applies.
 *
 * Key `<prefix>:receipt:<id>`, fields (all decimal strings):
 * - `first`: ms since the epoch of the first recorded delivery;
 * - `last`: ms since the epoch of the latest recorded delivery;
 * - `count`: recorded deliveries, so `count - 1` is the number of redeliveries from WeChat.
 * A delivery is recorded when the ingress's script ran for it — acknowledged, or answered 503 after Redis kept it (too
 * few replicas acknowledged the write, the connection closed before the answer, the answer came after the request's
 * bound), which WeChat then resends: that resend is counted too.
 * The key expires `ttlSeconds` after the first delivery (a later delivery does not extend it).
 * Invariant: a receipt exists only for an id whose job Redis had confirmed.
 */
export interface Receipt {
  first: number;
  last: number;
  count: number;
}

/** Redis key of the receipt for notification `id` (v3 id, or the derived `v2:pay:…` / `v2:refund:…`). */
export function receiptKey(prefix: string, id: string): string {
  return `${prefix}:receipt:${id}`;
}

/** The receipt of `id`, or undefined when there is none (never received, or older than the TTL). */
export async function readReceipt(redis: Redis, prefix: string, id: string): Promise<Receipt | undefined> {
  const fields = await redis.hgetall(receiptKey(prefix, id));
  if (fields.first === undefined) return undefined;
  return { first: Number(fields.first), last: Number(fields.last ?? fields.first), count: Number(fields.count ?? 1) };
}

// KEYS = receipt keys; ARGV[1] = now (ms), ARGV[2] = TTL (s), ARGV[2 + i] = deliveries to add for KEYS[i].
// Keeps an existing `first` and its expiry (two concurrent first deliveries both record; the earlier clock wins).
const RECORD_LUA = `
for i, key in ipairs(KEYS) do
  redis.call('HSETNX', key, 'first', ARGV[1])
  redis.call('HSET', key, 'last', ARGV[1])
  redis.call('HINCRBY', key, 'count', ARGV[2 + i])
  if redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, ARGV[2])
  end
end
return #KEYS`;

interface ReceiptCommands {
  wpnReceiptRecord(numberOfKeys: number, ...args: (string | number)[]): Promise<number>;
}

/**
 * Registers the script on `redis` (idempotent). ioredis sends EVALSHA and falls back to EVAL after a
 * Redis restart (NOSCRIPT), so the scripts survive a flushed script cache. The key count is passed per call.
 */
function withReceiptCommands(redis: Redis): Redis & ReceiptCommands {
  const candidate = redis as Redis & Partial<ReceiptCommands>;
  if (typeof candidate.wpnReceiptRecord !== "function") {
    redis.defineCommand("wpnReceiptRecord", { lua: RECORD_LUA });
  }
  return redis as Redis & ReceiptCommands;
}

/**
 * Records `deliveries` deliveries of each id, in one script call: for tools and tests that seed
 * receipts of jobs known to exist (the ingress records its receipts with the job itself). Rejects when Redis fails.
 */
export async function recordReceipts(
  redis: Redis,
  prefix: string,
  entries: readonly { id: string; deliveries: number }[],
  nowMs: number,
  ttlSeconds: number,
): Promise<void> {
  if (entries.length === 0) return;
  const keys = entries.map((entry) => receiptKey(prefix, entry.id));
  await withReceiptCommands(redis).wpnReceiptRecord(
    keys.length,
    ...keys,
    nowMs,
    ttlSeconds,
    ...entries.map((entry) => entry.deliveries),
  );
}
