import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCeilingAdder, createQueue, createRedisConnection, QueueName } from "../src/index.ts";
import { statesAfterAdding } from "./support/stored-jobs.ts";

const prefix = testQueuePrefix("queue-ceiling-add");
let redis: Redis;
let queue: Queue;

beforeAll(async () => {
  redis = createRedisConnection(TEST_REDIS_URL, "worker");
  await once(redis, "ready");
  queue = createQueue(QueueName.Publish, redis, prefix);
});
afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await deletePrefix(prefix);
});

const entry = (id: string) => ({ name: "payment.succeeded", id, data: { notificationId: id } });
/** notify.publish with no job, and no event turned away (the flag is not one of BullMQ's keys: obliterate leaves it). */
async function emptyQueue(): Promise<void> {
  await queue.obliterate({ force: true });
  await createCeilingAdder(queue, redis).storedDrained();
}
const waiting = async () => (await queue.getJobCounts("waiting")).waiting;

describe("createCeilingAdder (real Redis)", () => {
  it("under the ceiling, leaves Redis exactly as queue.add does (new and existing ids)", async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const entries = [entry(a), entry(b), entry(a)];
    const states = await statesAfterAdding(
      redis,
      QueueName.Publish,
      (p) => createQueue(QueueName.Publish, redis, p),
      async (bullmqQueue) => {
        for (const e of entries) await bullmqQueue.add(e.name, e.data, { jobId: e.id });
      },
      async (adderQueue) => {
        const adder = createCeilingAdder(adderQueue, redis);
        expect(await adder.add(entries.slice(0, 2), 10, Date.now(), "new")).toEqual({ placed: 2, added: 2 });
        expect(await adder.add(entries.slice(2), 10, Date.now(), "new")).toEqual({ placed: 1, added: 0 });
      },
    );
    expect(states.adder).toEqual(states.bullmq);
  });

  it("adds in order up to the ceiling and refuses the rest; a job whose id exists is placed without room", async () => {
    await emptyQueue();
    const adder = createCeilingAdder(queue, redis);
    const ids = Array.from({ length: 5 }, () => randomUUID());
    expect(await adder.add(ids.map(entry), 3, Date.now(), "new")).toEqual({ placed: 3, added: 3 });
    expect(await waiting()).toBe(3);
    expect(await queue.getJob(ids[3] ?? "")).toBeUndefined();
    // Full: an id already there is placed (nothing to add), the next new one is refused.
    expect(await adder.add([entry(ids[2] ?? ""), entry(ids[3] ?? "")], 3, Date.now(), "new")).toEqual({
      placed: 1,
      added: 0,
    });
    expect(await waiting()).toBe(3);
  });

  it("counts the consumer's retries waiting out their backoff (delayed) with the waiting jobs", async () => {
    // A consumer whose downstream is down fails every attempt at once: its jobs leave the wait list for the delayed
    // set (BullMQ's backoff), the wait list stays near empty, and Redis would grow by every new event for days.
    await emptyQueue();
    const adder = createCeilingAdder(queue, redis);
    for (const id of [randomUUID(), randomUUID()]) {
      await queue.add("payment.succeeded", { notificationId: id }, { jobId: id, delay: 60_000 });
    }
    expect(await adder.add([entry(randomUUID()), entry(randomUUID())], 3, Date.now(), "new")).toEqual({
      placed: 1,
      added: 1,
    });
    expect(await queue.getJobCounts("waiting", "delayed")).toEqual({ waiting: 1, delayed: 2 });
  });

  it("holds while the queue is paused: BullMQ 6.7 keeps a paused queue's jobs in its wait list", async () => {
    await emptyQueue();
    await queue.pause();
    try {
      const adder = createCeilingAdder(queue, redis);
      expect(await adder.add([entry(randomUUID()), entry(randomUUID())], 1, Date.now(), "new")).toEqual({
        placed: 1,
        added: 1,
      });
      expect(await redis.llen(queue.keys.wait ?? "")).toBe(1);
      expect(await queue.getJobCounts("waiting")).toEqual({ waiting: 1 });
      expect(await queue.isPaused()).toBe(true);
    } finally {
      await queue.resume();
    }
  });

  it("once it turned an event away, a new event waits behind it until the relay moved the turned-away ones back", async () => {
    // With a consumer slower than the traffic, each slot it freed went to the next new event, before the relay's next
    // pass (every second): the events turned away waited until the traffic fell, hours on a sale day.
    await emptyQueue();
    const adder = createCeilingAdder(queue, redis);
    const [a, b, turnedAway, next, later] = Array.from({ length: 5 }, () => randomUUID());
    expect(await adder.add([entry(a ?? ""), entry(b ?? ""), entry(turnedAway ?? "")], 2, Date.now(), "new")).toEqual({
      placed: 2,
      added: 2,
    });
    await (await queue.getJob(a ?? ""))?.remove();
    expect(await adder.add([entry(next ?? "")], 2, Date.now(), "new")).toEqual({ placed: 0, added: 0 });
    expect(await adder.add([entry(turnedAway ?? "")], 2, Date.now(), "stored")).toEqual({ placed: 1, added: 1 });
    await adder.storedDrained();
    await (await queue.getJob(b ?? ""))?.remove();
    expect(await adder.add([entry(later ?? "")], 2, Date.now(), "new")).toEqual({ placed: 1, added: 1 });
  });

  it("never passes the ceiling when many processes add at once: the count and the add are one step", async () => {
    await emptyQueue();
    const connections = Array.from({ length: 8 }, () => createRedisConnection(TEST_REDIS_URL, "worker"));
    const queues = connections.map((c) => createQueue(QueueName.Publish, c, prefix));
    try {
      const adders = queues.map((q, i) => createCeilingAdder(q, connections[i] as Redis));
      const answers = await Promise.all(
        Array.from({ length: 64 }, (_, i) =>
          adders[i % adders.length]?.add([entry(randomUUID())], 10, Date.now(), "new"),
        ),
      );
      expect(answers.filter((a) => a?.placed === 1)).toHaveLength(10);
      expect(await waiting()).toBe(10);
    } finally {
      await Promise.all(queues.map((q) => q.close()));
      await Promise.all(connections.map((c) => c.quit()));
    }
  });
});
