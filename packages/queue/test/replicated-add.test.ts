import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { TestRedisServer, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createQueue,
  createReceiptedAdder,
  createRedisConnection,
  NotReplicatedError,
  PARSE_JOB_NAME,
  QueueName,
  type ReceiptedAdder,
  readReceipt,
  receiptKey,
} from "../src/index.ts";

/** The adder with `replication`: WAIT after each batch, on a test-owned primary with one replica. */
const prefix = testQueuePrefix("queue-replicated-add");
const WAIT_TIMEOUT_MS = 200;
let primary: TestRedisServer;
let replica: TestRedisServer;
let producer: Redis;
let onReplica: Redis;
let admin: Redis;
let monitor: Redis;
let queue: Queue;
let adder: ReceiptedAdder;
/** Commands the primary ran, in its order, as MONITOR reports them: the name (lower case) and the first argument. */
const ran: string[] = [];

beforeAll(async () => {
  primary = await TestRedisServer.start();
  replica = await TestRedisServer.start({ replicaOf: primary });
  await replica.replicating();
  producer = createRedisConnection(primary.url, "producer");
  await once(producer, "ready");
  onReplica = createRedisConnection(replica.url, "admin");
  admin = createRedisConnection(primary.url, "admin");
  monitor = await createRedisConnection(primary.url, "admin").monitor();
  monitor.on("monitor", (_time: string, args: string[]) =>
    ran.push(`${args[0]?.toLowerCase()} ${args[1]?.slice(0, 60)}`),
  );
  queue = createQueue(QueueName.Parse, producer, prefix);
  adder = createReceiptedAdder(queue, producer, PARSE_JOB_NAME, {
    prefix,
    ttlSeconds: 3_600,
    replication: { replicas: 1, timeoutMs: WAIT_TIMEOUT_MS },
  });
});
afterAll(async () => {
  await queue?.close();
  for (const connection of [producer, onReplica, admin, monitor]) connection?.disconnect();
  await replica?.kill();
  await primary?.kill();
});

/**
 * The script calls and WAITs the primary ran since the last call, in its order. An ECHO sent after them marks the end:
 * MONITOR reports commands in the order the server runs them.
 */
async function scriptCallsAndWaits(): Promise<string[]> {
  const marker = `end-${randomUUID()}`;
  await admin.echo(marker);
  for (let i = 0; !ran.some((line) => line.includes(marker)); i++) {
    if (i > 100) throw new Error("MONITOR did not report the marker");
    await new Promise((r) => setTimeout(r, 10));
  }
  const lines = ran.splice(0);
  return lines.map((line) => line.split(" ")[0] ?? "").filter((name) => ["eval", "evalsha", "wait"].includes(name));
}

const entry = (id: string) => ({ id, data: { v: 1, id }, deliveries: 1 });
const jobKey = (id: string) => `${prefix}:${QueueName.Parse}:${id}`;

describe("createReceiptedAdder with replication (real primary and replica)", () => {
  it("sends WAIT right after the script, and the job is on the replica once add resolves", async () => {
    await scriptCallsAndWaits();
    const [a, b] = [randomUUID(), randomUUID()];
    expect(await adder.add([entry(a)], Date.now())).toEqual(["added"]);
    expect(await onReplica.exists(jobKey(a), receiptKey(prefix, a))).toBe(2);
    // The first batch sends the script itself; later ones its hash.
    expect(await adder.add([entry(b), entry(a)], Date.now())).toEqual(["added", "receipt"]);
    expect(await onReplica.exists(jobKey(b))).toBe(1);
    expect(await scriptCallsAndWaits()).toEqual(["eval", "wait", "evalsha", "wait"]);
  });

  it("a server that lost the script (NOSCRIPT): EVAL and a second WAIT after it, never the first WAIT's answer", async () => {
    await adder.add([entry(randomUUID())], Date.now());
    await scriptCallsAndWaits();
    await admin.script("FLUSH");
    const id = randomUUID();
    expect(await adder.add([entry(id)], Date.now())).toEqual(["added"]);
    expect(await onReplica.exists(jobKey(id))).toBe(1);
    expect(await scriptCallsAndWaits()).toEqual(["evalsha", "wait", "eval", "wait"]);
  });

  it("rejects with NotReplicatedError when the replica does not acknowledge within the timeout; the job is on the primary", async () => {
    const id = randomUUID();
    replica.signal("SIGSTOP");
    try {
      const started = performance.now();
      const error = await adder.add([entry(id)], Date.now()).catch((e: unknown) => e);
      expect(performance.now() - started).toBeGreaterThanOrEqual(WAIT_TIMEOUT_MS - 5);
      expect(error).toBeInstanceOf(NotReplicatedError);
      expect(error).toMatchObject({ acked: 0, required: 1, name: "NotReplicatedError" });
      expect(await admin.exists(jobKey(id), receiptKey(prefix, id))).toBe(2);
      // Recorded although refused: the receipt counts deliveries its script ran for, not the acknowledged ones.
      expect((await readReceipt(admin, prefix, id))?.count).toBe(1);
    } finally {
      replica.signal("SIGCONT");
    }
    await replica.replicating();
    // Added again (WeChat's resend): the receipt answers it, and now the replica acknowledges.
    expect(await adder.add([entry(id)], Date.now())).toEqual(["receipt"]);
    expect((await readReceipt(admin, prefix, id))?.count).toBe(2);
  });

  it("refuses replication options WAIT cannot honour (no replica to wait for, a timeout of 0 = for ever)", () => {
    for (const replication of [
      { replicas: 0, timeoutMs: 100 },
      { replicas: 1, timeoutMs: 0 },
    ]) {
      expect(() =>
        createReceiptedAdder(queue, producer, PARSE_JOB_NAME, { prefix, ttlSeconds: 60, replication }),
      ).toThrow(RangeError);
    }
  });
});
