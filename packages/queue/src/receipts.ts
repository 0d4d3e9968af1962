import type { Redis } from "ioredis";

/**
 * Ingress receipts: a small Redis hash per notification id that the ingress writes after BullMQ confirmed the
 * job, so that WeChat's resends (for ~24 h) are answered with success without a second job — also after the
 * job itself was completed and removed from Redis, when BullMQ's own `jobId` dedupe no longer applies.
 *
 * Key `<prefix>:receipt:<id>`, fields (all decimal strings):
 * - `first`: ms since the epoch of the first acknowledged delivery;
 * - `last`: ms since the epoch of the latest acknowledged delivery;
 * - `count`: acknowledged deliveries, so `count - 1` is the number of redeliveries from WeChat.
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

// KEYS[1] receipt key; ARGV[1] now (ms). Returns 1 and bumps `count`/`last` when the receipt exists, else 0.
const TOUCH_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'count', 1)
  redis.call('HSET', KEYS[1], 'last', ARGV[1])
  return 1
end
return 0`;

// KEYS[1] receipt key; ARGV[1] now (ms), ARGV[2] TTL (s), ARGV[3] deliveries to add. Keeps an existing `first`
// and its expiry (two concurrent first deliveries both record; the earlier one's clock wins).
const RECORD_LUA = `
redis.call('HSETNX', KEYS[1], 'first', ARGV[1])
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'count', ARGV[3])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1`;

interface ReceiptCommands {
  wpnReceiptTouch(key: string, nowMs: number): Promise<number>;
  wpnReceiptRecord(key: string, nowMs: number, ttlSeconds: number, deliveries: number): Promise<number>;
}

/**
 * Registers the two scripts on `redis` (idempotent). ioredis sends EVALSHA and falls back to EVAL after a
 * Redis restart (NOSCRIPT), so the scripts survive a flushed script cache.
 */
function withReceiptCommands(redis: Redis): Redis & ReceiptCommands {
  const candidate = redis as Redis & Partial<ReceiptCommands>;
  if (typeof candidate.wpnReceiptTouch !== "function") {
    redis.defineCommand("wpnReceiptTouch", { numberOfKeys: 1, lua: TOUCH_LUA });
    redis.defineCommand("wpnReceiptRecord", { numberOfKeys: 1, lua: RECORD_LUA });
  }
  return redis as Redis & ReceiptCommands;
}

/**
 * For each id, in one pipeline: when a receipt exists, counts this delivery (`count`+1, `last`=now) and
 * returns true. Rejects when Redis fails (the caller must then not acknowledge).
 */
export async function touchReceipts(redis: Redis, prefix: string, ids: readonly string[], nowMs: number): Promise<boolean[]> {
  const client = withReceiptCommands(redis);
  const pipeline = client.pipeline() as ReturnType<Redis["pipeline"]> & {
    wpnReceiptTouch(key: string, nowMs: number): unknown;
  };
  for (const id of ids) pipeline.wpnReceiptTouch(receiptKey(prefix, id), nowMs);
  return (await execOrThrow(pipeline)).map((value) => value === 1);
}

/**
 * Records `deliveries` acknowledged deliveries of each id, in one pipeline. Call only after the job was
 * confirmed by Redis. Rejects when Redis fails.
 */
export async function recordReceipts(
  redis: Redis,
  prefix: string,
  entries: readonly { id: string; deliveries: number }[],
  nowMs: number,
  ttlSeconds: number,
): Promise<void> {
  const client = withReceiptCommands(redis);
  const pipeline = client.pipeline() as ReturnType<Redis["pipeline"]> & {
    wpnReceiptRecord(key: string, nowMs: number, ttlSeconds: number, deliveries: number): unknown;
  };
  for (const { id, deliveries } of entries) {
    pipeline.wpnReceiptRecord(receiptKey(prefix, id), nowMs, ttlSeconds, deliveries);
  }
  await execOrThrow(pipeline);
}

/** `pipeline.exec()` reports per-command errors in its result instead of rejecting; surface the first. */
async function execOrThrow(pipeline: ReturnType<Redis["pipeline"]>): Promise<unknown[]> {
  const results = await pipeline.exec();
  if (results === null) throw new Error("Redis pipeline was discarded");
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}
