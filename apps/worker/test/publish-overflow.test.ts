import { countOverflowEvents, storeOverflowEvent } from "@wpn/db";
import {
  type CeilingAdder,
  createCeilingAdder,
  createQueue,
  createRedisConnection,
  PARSE_JOB_NAME,
  type PublishEvent,
  publishJobName,
  publishJobSchema,
  QueueName,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { type Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { WorkerMetrics } from "../src/metrics.ts";
import { PublishRelay } from "../src/publish-relay.ts";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { eventPublisher } from "../src/workers/publisher.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, quietLog, seedOrder, seedSkus, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// notify.publish with no consumer: past PUBLISH_MAX_WAITING waiting events, new ones wait in PostgreSQL
// (PublishOverflow) instead of growing Redis, and the relay moves them back, oldest first, once there is room.
let world: World;
let worker: WorkerHandle;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let publishQueue: Queue;
/** The notifications applied by the first test, in the order they were applied. */
const ids: string[] = [];

beforeAll(async () => {
  world = await createWorld("wpubo");
  await seedSkus(world.prisma, { A: 1_000 });
  worker = await startWorker(world.config({ PUBLISH_EVENTS: "true", PUBLISH_MAX_WAITING: "5" }), {
    logger: quietLog,
    healthPort: 0,
  });
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  publishQueue = createQueue(QueueName.Publish, redis, world.prefix);
});
afterAll(async () => {
  await worker?.close();
  await Promise.all([parseQueue, applyQueue, publishQueue].map((q) => q?.close()));
  redis?.disconnect();
  await world.cleanup();
});

/** A paid notification through parse and apply, one at a time; resolves with its id once its apply job completed. */
async function paidNotification(): Promise<string> {
  const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
  const job = v3Payment(world, { outTradeNo: otn });
  await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
  await waitFor("apply completed", async () => (await applyQueue.getJobState(job.id)) === "completed");
  return job.id;
}

const overflowIds = async () =>
  (await world.prisma.publishOverflow.findMany({ orderBy: { id: "asc" } })).map((r) => r.eventId);
const total = async (metric: { get(): Promise<{ values: { value: number }[] }> }) =>
  (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
/** Jobs notify.publish has ever been asked to add, duplicates included (BullMQ's id counter: +1 per add). */
const addsAsked = async () => Number((await redis.get(`${world.prefix}:${QueueName.Publish}:id`)) ?? 0);

describe("notify.publish with no consumer", () => {
  it("holds PUBLISH_MAX_WAITING events; the rest go to PublishOverflow, once each", async () => {
    for (let i = 0; i < 12; i++) ids.push(await paidNotification());
    expect((await publishQueue.getJobCounts("waiting")).waiting).toBe(5);
    expect(await overflowIds()).toEqual(ids.slice(5));
    const stored = await world.prisma.publishOverflow.findUniqueOrThrow({ where: { eventId: ids[5] ?? "" } });
    expect(publishJobSchema.parse(stored.payload)).toMatchObject({ type: "payment.succeeded", notificationId: ids[5] });
    expect(await total(worker.metrics.published)).toBe(5);
    expect(await total(worker.metrics.publishDiverted)).toBe(7);
    // A diverted event's apply job runs again (a stalled or replayed job): ALREADY, the same event — stored once.
    const rerun = ids[11] ?? "";
    await (await applyQueue.getJob(rerun))?.retry("completed");
    await waitFor("re-run", async () => (await applyQueue.getJob(rerun))?.returnvalue?.outcome === "ALREADY");
    expect(await overflowIds()).toEqual(ids.slice(5));
    expect(await total(worker.metrics.publishDiverted)).toBe(7);
    expect((await publishQueue.getJobCounts("waiting")).waiting).toBe(5);
  }, 60_000);

  it("the relay moves the stored events to notify.publish, oldest first, as a consumer frees room", async () => {
    const delivered: string[] = [];
    const consumer = new Worker(
      QueueName.Publish,
      async (job) => {
        delivered.push(job.data.notificationId);
      },
      { connection: createRedisConnection(TEST_REDIS_URL, "worker"), prefix: world.prefix, concurrency: 1 },
    );
    try {
      await waitFor("all delivered", async () => delivered.length >= ids.length, 20_000);
      await waitFor("table empty", async () => (await overflowIds()).length === 0);
      // BullMQ's wait list is first in, first out: the 5 that were waiting, then the 7 stored, in the order stored.
      expect(delivered).toEqual(ids);
      expect(await total(worker.metrics.publishDrained)).toBe(7);
      // Events the relay moved back count there, not in wpn_worker_published_events_total: 5 + 7 make the 12.
      expect(await total(worker.metrics.published)).toBe(5);
    } finally {
      await consumer.close();
      await (consumer.opts.connection as Redis).quit();
    }
  }, 30_000);
});

describe("wpn_worker_publish_overflow_rows", () => {
  it("PostgreSQL gives up on the count at the scrape's bound, not 30 s later", async () => {
    // The scrape stopped waiting after 1 s, but the count(*) went on holding a pooled connection — the apply stage's —
    // until the 30 s statement_timeout: a table of millions of rows (or a lock on it) took one per scrape and process.
    let release: () => void = () => undefined;
    const locked = new Promise<void>((resolve) => {
      release = resolve;
    });
    let held: () => void = () => undefined;
    const holding = new Promise<void>((resolve) => {
      held = resolve;
    });
    const lock = world.prisma.$transaction(async (tx) => {
      await tx.$executeRaw`LOCK TABLE "PublishOverflow" IN ACCESS EXCLUSIVE MODE`;
      held();
      await locked;
    });
    try {
      await holding;
      const started = Date.now();
      const timer = setTimeout(release, 3_000);
      await expect(countOverflowEvents(world.prisma, 300)).rejects.toThrow(/statement timeout/);
      clearTimeout(timer);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      release();
      await lock;
    }
    expect(await countOverflowEvents(world.prisma, 1_000)).toBe(await world.prisma.publishOverflow.count());
  }, 30_000);
});

describe("relays of many processes", () => {
  /** A relay as another worker process runs one: its own connection and queue. */
  /**
   * A relay as a worker process runs one, on a connection of its own (7 rows a batch). `adder` wraps the real one
   * (a fault, a close mid-pass); `log` and `intervalMs` as the test needs.
   */
  async function relayProcess(
    maxWaiting: number,
    options: { log?: Logger; intervalMs?: number; adder?: (real: CeilingAdder) => CeilingAdder } = {},
  ) {
    const connection = createRedisConnection(TEST_REDIS_URL, "worker");
    const queue = createQueue(QueueName.Publish, connection, world.prefix);
    const metrics = new WorkerMetrics();
    const real = createCeilingAdder(queue, connection);
    const relay = new PublishRelay({
      prisma: world.prisma,
      adder: options.adder ? options.adder(real) : real,
      maxWaiting,
      log: options.log ?? quietLog,
      metrics,
      batchSize: 7,
      intervalMs: options.intervalMs ?? 1_000,
    });
    return {
      relay,
      metrics,
      async close() {
        await relay.close();
        await queue.close();
        await connection.quit();
      },
    };
  }

  /** An event the worker published in the first tests. */
  let template: PublishEvent;

  /** Stored events shaped as the apply stage writes them, under ids of their own. */
  async function storedEvents(count: number, label: string): Promise<PublishEvent[]> {
    const events = Array.from({ length: count }, (_, i) => ({ ...template, notificationId: `${label}-${i}` }));
    for (const event of events) await storeOverflowEvent(world.prisma, event.notificationId, event);
    return events;
  }

  beforeAll(async () => {
    template = publishJobSchema.parse((await publishQueue.getJob(ids[0] ?? ""))?.data) as PublishEvent;
    // Only the relays below move rows now.
    await worker.close();
    await publishQueue.obliterate({ force: true });
  });

  it("two relays running at once add each event exactly once, in the order stored", async () => {
    const events = await storedEvents(300, "two");
    const [a, b] = [await relayProcess(10_000), await relayProcess(10_000)];
    try {
      const asked = await addsAsked();
      const [movedA, movedB] = await Promise.all([a.relay.drain(), b.relay.drain()]);
      // One add per event: no event was taken by both (a copy BullMQ would drop still counts here).
      expect(await addsAsked()).toBe(asked + 300);
      expect(movedA + movedB).toBe(300);
      expect(await overflowIds()).toEqual([]);
      // One relay's step at a time, each from the oldest row left: the wait list (newest first) is the table's order.
      const waiting = await publishQueue.getJobs(["waiting"], 0, -1);
      expect(waiting.map((j) => j.id).reverse()).toEqual(events.map((e) => e.notificationId));
      expect(waiting.every((j) => j.name === publishJobName("payment.succeeded"))).toBe(true);
      expect((await total(a.metrics.publishDrained)) + (await total(b.metrics.publishDrained))).toBe(300);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await publishQueue.obliterate({ force: true });
    }
  }, 30_000);

  it("two relays at once with room for one batch: the oldest batch gets it, and the flag stays until it is back", async () => {
    // Each relay locked its own batch (SKIP LOCKED) and the first script to reach Redis took the room: the younger
    // batch went ahead of the older, which waited a pass for room, and the relay that moved the younger one — having
    // met no other row — cleared the flag with the older batch still in the table.
    await storedEvents(14, "pair");
    await redis.set(`${world.prefix}:${QueueName.Publish}:wpn:turned-away`, "1");
    let other: Promise<number> | undefined;
    const b = await relayProcess(7);
    const a = await relayProcess(7, {
      adder: (real) => ({
        async add(...args) {
          // a holds the oldest batch; b runs its whole pass before a's add reaches Redis.
          other ??= b.relay.drain();
          await other;
          return real.add(...args);
        },
        storedDrained: () => real.storedDrained(),
        storedWaiting: () => real.storedWaiting(),
      }),
    });
    try {
      await a.relay.drain();
      expect({
        waiting: (await publishQueue.getJobs(["waiting"], 0, -1)).map((j) => j.id).sort(),
        flag: await redis.exists(`${world.prefix}:${QueueName.Publish}:wpn:turned-away`),
      }).toEqual({ waiting: Array.from({ length: 7 }, (_, i) => `pair-${i}`), flag: 1 });
    } finally {
      await Promise.all([a.close(), b.close()]);
      await redis.del(`${world.prefix}:${QueueName.Publish}:wpn:turned-away`);
      await world.prisma.publishOverflow.deleteMany();
      await publishQueue.obliterate({ force: true });
    }
  }, 30_000);

  it("new events queue behind the stored ones until the relay moved them all back", async () => {
    const [e0, e1, e2, e3, e4] = Array.from({ length: 5 }, (_, i) => ({ ...template, notificationId: `behind-${i}` }));
    const r = await relayProcess(2);
    const connection = createRedisConnection(TEST_REDIS_URL, "worker");
    const queue = createQueue(QueueName.Publish, connection, world.prefix);
    const publish = eventPublisher({
      adder: createCeilingAdder(queue, connection),
      maxWaiting: 2,
      prisma: world.prisma,
      log: quietLog,
      metrics: new WorkerMetrics(),
    });
    const take = async (id: string) => (await publishQueue.getJob(id))?.remove();
    try {
      for (const event of [e0, e1, e2]) await publish(event as PublishEvent);
      expect(await overflowIds()).toEqual(["behind-2"]);
      // The consumer frees a slot: the stored event gets it, not the next new one.
      await take("behind-0");
      await publish(e3 as PublishEvent);
      expect(await overflowIds()).toEqual(["behind-2", "behind-3"]);
      expect(await r.relay.drain()).toBe(1);
      await take("behind-1");
      await take("behind-2");
      expect(await r.relay.drain()).toBe(1);
      // All back: a new event with room goes to the queue again.
      await publish(e4 as PublishEvent);
      expect(await overflowIds()).toEqual([]);
      expect((await publishQueue.getJobs(["waiting"], 0, -1)).map((j) => j.id).sort()).toEqual([
        "behind-3",
        "behind-4",
      ]);
    } finally {
      await r.close();
      await world.prisma.publishOverflow.deleteMany();
      await publishQueue.obliterate({ force: true });
      await queue.close();
      await connection.quit();
    }
  }, 30_000);

  it("an event turned away while a relay's pass clears the flag, stored after that pass, holds new events behind it", async () => {
    // The script that turns an event away sets the flag at once, but the event's row is inserted a moment later. A pass
    // running in between sees no row and clears the flag; before, the stored event then had no flag before it, and
    // every new event that found room — up to a relay interval's worth — was added ahead of it.
    const [e0, e1, e2] = Array.from({ length: 3 }, (_, i) => ({ ...template, notificationId: `between-${i}` }));
    const r = await relayProcess(1);
    const connection = createRedisConnection(TEST_REDIS_URL, "worker");
    const queue = createQueue(QueueName.Publish, connection, world.prefix);
    const real = createCeilingAdder(queue, connection);
    let between: (() => Promise<void>) | undefined;
    const hooked: CeilingAdder = {
      async add(...args) {
        const answer = await real.add(...args);
        await between?.();
        return answer;
      },
      storedDrained: () => real.storedDrained(),
      storedWaiting: () => real.storedWaiting(),
    };
    const publish = eventPublisher({
      adder: hooked,
      maxWaiting: 1,
      prisma: world.prisma,
      log: quietLog,
      metrics: new WorkerMetrics(),
    });
    try {
      await publish(e0 as PublishEvent);
      // e1 is turned away (the queue is full); before its row is inserted, the consumer takes e0 and a pass runs.
      between = async () => {
        between = undefined;
        await (await publishQueue.getJob("between-0"))?.remove();
        expect(await r.relay.drain()).toBe(0);
      };
      await publish(e1 as PublishEvent);
      expect(await overflowIds()).toEqual(["between-1"]);
      // The queue has room, but e1 waits for it: e2 goes behind e1, not ahead of it.
      await publish(e2 as PublishEvent);
      expect({
        waiting: (await publishQueue.getJobs(["waiting"], 0, -1)).map((j) => j.id),
        stored: await overflowIds(),
      }).toEqual({
        waiting: [],
        stored: ["between-1", "between-2"],
      });
      expect(await r.relay.drain()).toBe(1);
      expect((await publishQueue.getJobs(["waiting"], 0, -1)).map((j) => j.id)).toEqual(["between-1"]);
    } finally {
      await r.close();
      await world.prisma.publishOverflow.deleteMany();
      await publishQueue.obliterate({ force: true });
      await queue.close();
      await connection.quit();
    }
  }, 30_000);

  it("a row whose job was completed and removed meanwhile is added again: at least once, not exactly once", async () => {
    // A relay added the event and died (or its transaction expired, 5 s) before its delete committed; the consumer
    // took the job and BullMQ removed it (removeOnComplete: after 1 h, or once 10,000 newer jobs completed — 5 s at
    // 2,000 events/s). The job id no longer finds it: the event is delivered a second time.
    const [event] = await storedEvents(1, "again");
    const r = await relayProcess(10_000);
    try {
      const first = await publishQueue.add(publishJobName("payment.succeeded"), event, { jobId: "again-0" });
      await first.remove();
      const asked = await addsAsked();
      expect(await r.relay.drain()).toBe(1);
      expect(await addsAsked()).toBe(asked + 1);
      expect(await publishQueue.getJobState("again-0")).toBe("waiting");
    } finally {
      await r.close();
      await publishQueue.obliterate({ force: true });
    }
  }, 30_000);

  it("a batch of unreadable rows at the head does not hold back the events behind it, and each is logged once", async () => {
    // The oldest `batchSize` rows were locked at every step: rows the relay leaves (not events of their id) filled
    // the batch, nothing behind them ever moved, and each was logged at error level every second, with err "]".
    const bad = Array.from({ length: 7 }, (_, i) => `unreadable-${i}`);
    for (const id of bad) await storeOverflowEvent(world.prisma, id, { notificationId: id });
    const good = await storedEvents(3, "behind");
    const { logger, lines } = capturedLog();
    const { relay, close } = await relayProcess(10_000, { log: logger });
    try {
      expect(await relay.drain()).toBe(3);
      expect(await overflowIds()).toEqual(bad);
      expect((await publishQueue.getJobs(["waiting"], 0, -1)).map((j) => j.id).sort()).toEqual(
        good.map((e) => e.notificationId).sort(),
      );
      expect(await relay.drain()).toBe(0);
      const failed = lines.map((l) => JSON.parse(l)).filter((l) => l.code === "PUBLISH_RELAY_FAILED");
      expect(failed.map((l) => l.eventId)).toEqual(bad);
      expect(failed[0]?.err).toMatch(/^payload version undefined is not one of/);
    } finally {
      await close();
      await world.prisma.publishOverflow.deleteMany();
      await publishQueue.obliterate({ force: true });
    }
  }, 30_000);

  it("a relay failing every pass (PostgreSQL or Redis down) logs one PUBLISH_RELAY_FAILED per interval, counts each", async () => {
    // A pass a second per process, each failing at once (a refused connection), was a warning a second per process
    // for the whole outage.
    await storedEvents(1, "outage");
    const { logger, lines } = capturedLog();
    const { relay, metrics, close } = await relayProcess(10_000, {
      log: logger,
      intervalMs: 1,
      adder: () => ({
        add: async () => {
          throw new Error("connect ECONNREFUSED 127.0.0.1:6379");
        },
        storedDrained: async () => undefined,
        storedWaiting: async () => undefined,
      }),
    });
    try {
      relay.start();
      await waitFor("20 failed passes", async () => (await total(metrics.publishRelayFailures)) >= 20);
      await relay.close();
      const failed = lines.map((l) => JSON.parse(l)).filter((l) => l.code === "PUBLISH_RELAY_FAILED");
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ err: "connect ECONNREFUSED 127.0.0.1:6379", suppressed: 0 });
      expect(await overflowIds()).toEqual(["outage-0"]);
    } finally {
      await close();
      await world.prisma.publishOverflow.deleteMany();
    }
  }, 30_000);

  it("a relay closing mid-pass stops after the batch in flight, whose rows are deleted whole", async () => {
    // A worker stopping while 1,000s of rows wait used to run the whole pass (a transaction per 7 rows here, per 100 in
    // production) before its Redis and PostgreSQL closed: past WORKER_CLOSE_STEP_MS the close went on under it.
    const events = await storedEvents(70, "closing");
    let closed: Promise<void> | undefined;
    const r = await relayProcess(10_000, {
      intervalMs: 1,
      adder: (real) => ({
        async add(entries, ceiling, nowMs, origin) {
          const answer = await real.add(entries, ceiling, nowMs, origin);
          // The worker's close() arrives while the first batch is in Redis.
          closed ??= r.relay.close();
          return answer;
        },
        storedDrained: () => real.storedDrained(),
        storedWaiting: () => real.storedWaiting(),
      }),
    });
    const { relay } = r;
    try {
      relay.start();
      await waitFor("close called", async () => closed !== undefined);
      await closed;
      expect(await overflowIds()).toEqual(events.slice(7).map((e) => e.notificationId));
      expect((await publishQueue.getJobs(["waiting"], 0, -1)).map((j) => j.id).sort()).toEqual(
        events
          .slice(0, 7)
          .map((e) => e.notificationId)
          .sort(),
      );
    } finally {
      await r.close();
      await world.prisma.publishOverflow.deleteMany();
      await publishQueue.obliterate({ force: true });
    }
  }, 30_000);

  it("diverting a sale day's events logs one PUBLISH_DIVERTED line per interval, and counts every event", async () => {
    // 2,000 events a second with no consumer were 2,000 warnings a second: the log, not Redis, filled up.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.parse("2026-12-04T00:00:00Z") });
    const { logger, lines } = capturedLog();
    const connection = createRedisConnection(TEST_REDIS_URL, "worker");
    const queue = createQueue(QueueName.Publish, connection, world.prefix);
    const metrics = new WorkerMetrics();
    try {
      const publish = eventPublisher({
        adder: createCeilingAdder(queue, connection),
        maxWaiting: 1,
        prisma: world.prisma,
        log: logger,
        metrics,
      });
      const events = Array.from({ length: 40 }, (_, i) => ({ ...template, notificationId: `flood-${i}` }));
      for (const event of events.slice(0, 30)) await publish(event);
      vi.advanceTimersByTime(10_000);
      for (const event of events.slice(30)) await publish(event);
      const diverted = lines.map((l) => JSON.parse(l)).filter((l) => l.code === "PUBLISH_DIVERTED");
      // The first diverted event at once; the next line an interval later, with those left out in between.
      expect(diverted.map((l) => [l.notificationId, l.suppressed])).toEqual([
        ["flood-1", 0],
        ["flood-30", 28],
      ]);
      expect(await total(metrics.publishDiverted)).toBe(39);
      expect(await overflowIds()).toEqual(events.slice(1).map((e) => e.notificationId));
    } finally {
      vi.useRealTimers();
      await world.prisma.publishOverflow.deleteMany();
      await queue.obliterate({ force: true });
      await queue.close();
      await connection.quit();
    }
  }, 30_000);

  it("stops at the ceiling, and a row whose job was added before a relay died is deleted without a second add", async () => {
    const events = await storedEvents(4, "died");
    const r = await relayProcess(3);
    try {
      // A relay added the oldest event and died before its delete committed.
      const first = events[0] as PublishEvent;
      const kept = await publishQueue.add(publishJobName(first.type), first, { jobId: first.notificationId });
      expect(await r.relay.drain()).toBe(3);
      // The first was found (its job left as it was) and its row deleted; two were added; the fourth waits for room.
      expect(await overflowIds()).toEqual(["died-3"]);
      expect((await publishQueue.getJobs(["waiting"], 0, -1)).map((j) => j.id).sort()).toEqual([
        "died-0",
        "died-1",
        "died-2",
      ]);
      expect((await publishQueue.getJob("died-0"))?.timestamp).toBe(kept.timestamp);
      await publishQueue.drain();
      expect(await r.relay.drain()).toBe(1);
      expect(await overflowIds()).toEqual([]);
    } finally {
      await r.close();
    }
  }, 30_000);
});
