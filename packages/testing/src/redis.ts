import { randomBytes } from "node:crypto";
import { createRedisConnection } from "@wpn/queue";

/**
 * The Redis the suite uses; TEST_REDIS_URL points it elsewhere. Read from process.env here, outside packages/config,
 * on purpose: the test suite's own setting, not the application's REDIS_URL (see TEST_DATABASE_BASE_URL).
 */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379";

/** A BullMQ key prefix unique to one test file, so files share the local Redis without seeing each other's jobs. */
export function testQueuePrefix(label = "t"): string {
  return `test-${label}-${randomBytes(5).toString("hex")}`;
}

/** Deletes every key under `prefix` (SCAN, never KEYS, so a busy Redis is not blocked). */
export async function deletePrefix(prefix: string, url: string = TEST_REDIS_URL): Promise<void> {
  const redis = createRedisConnection(url, "admin");
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
