import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { TestRedisServer, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  APPLY_JOB_NAME,
  createBulkAdder,
  createQueue,
  createReceiptedAdder,
  createRedisConnection,
  PARSE_JOB_NAME,
  QueueName,
  receiptKey,
} from "../src/index.ts";

// A Redis of this file's own: the test sets its maxmemory.
let server: TestRedisServer;
let redis: Redis;
const prefix = testQueuePrefix("queue-oom-add");
let parse: Queue;
let apply: Queue;

beforeAll(async () => {
  server = await TestRedisServer.start();
  redis = createRedisConnection(server.url, "producer");
  await once(redis, "ready");
  parse = createQueue(QueueName.Parse, redis, prefix);
  apply = createQueue(QueueName.Apply, redis, prefix);
});
afterAll(async () => {
  await parse?.close();
  await apply?.close();
  redis?.disconnect();
  await server?.kill();
});

/** Every key and its content, as DUMP gives it: equal before and after means nothing was written. */
async function everything(): Promise<Record<string, string>> {
  const keys = (await redis.keys("*")).sort();
  const state: Record<string, string> = {};
  for (const key of keys) state[key] = (await redis.dumpBuffer(key))?.toString("base64") ?? "";
  return state;
}

/**
 * Sets maxmemory to half of what Redis uses now (noeviction): every write is refused (OOM) while reads go on. Half, not
 * just under: the margin outlasts what freed buffers give back between the commands.
 */
async function overTheLimit(): Promise<void> {
  const used = Number(/^used_memory:(\d+)/m.exec(await redis.info("memory"))?.[1]);
  await redis.config("SET", "maxmemory-policy", "noeviction", "maxmemory", String(Math.floor(used / 2)));
  await expect(redis.set("probe", "1")).rejects.toThrow(/^OOM /);
}

describe("adding at maxmemory under noeviction (real Redis)", () => {
  it("refuses a batch whole: no job, receipt, count, event or counter of it is written, so a 503 kept nothing", async () => {
    // Redis refuses a script's write for OOM only while the script has written nothing yet (then it cannot stop half
    // way): the batch is refused at its first write, whichever entry it belongs to.
    const adder = createReceiptedAdder(parse, redis, PARSE_JOB_NAME, { prefix, ttlSeconds: 60 });
    const [seen, queued, fresh] = [1, 2, 3].map(() => `v3:1900000109:${randomUUID()}`) as [string, string, string];
    const entry = (id: string) => ({ id, data: { v: 1, id, body: "x".repeat(1_500) }, deliveries: 1 });
    expect(await adder.add([entry(seen), entry(queued)], Date.now())).toEqual(["added", "added"]);
    // `queued`'s job without its receipt: the batch meets all three paths (receipt, job, add).
    await redis.del(receiptKey(prefix, queued));
    const bulk = createBulkAdder(apply, redis);
    await overTheLimit();
    try {
      const before = await everything();
      for (const batch of [[seen], [queued], [fresh], [seen, queued, fresh], [fresh, seen]]) {
        await expect(adder.add(batch.map(entry), Date.now())).rejects.toThrow(/^OOM /);
      }
      await expect(bulk.add([{ name: APPLY_JOB_NAME, id: fresh, data: { v: 1 } }], Date.now())).rejects.toThrow(
        /^OOM /,
      );
      expect(await everything()).toEqual(before);
    } finally {
      await redis.config("SET", "maxmemory", "0");
    }
    // The resend, once Redis has room: answered as what it is, one job each.
    expect(await adder.add([seen, queued, fresh].map(entry), Date.now())).toEqual(["receipt", "job", "added"]);
  });
});
