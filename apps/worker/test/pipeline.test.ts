import {
  createQueue,
  createRedisConnection,
  DEAD_JOB_NAME,
  type DeadLetter,
  deadLetterSchema,
  PARSE_JOB_NAME,
  publishJobSchema,
  QueueName,
} from "@wpn/queue";
import { deletePrefix, startDbProxy, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replayDeadLetter } from "../src/replay.ts";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import {
  createWorld,
  orderOf,
  quietLog,
  seedOrder,
  seedSkus,
  stockOf,
  v3Payment,
  type World,
} from "./support/fixtures.ts";
import { runReplayCli } from "./support/replay-cli.ts";
import { waitFor } from "./support/wait.ts";

/** The stages wired through real BullMQ queues in this process (one worker, its own prefix and schema). */
let world: World;
let worker: WorkerHandle;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let deadQueue: Queue;
let publishQueue: Queue;
const WINDOW_SECONDS = 3;

beforeAll(async () => {
  world = await createWorld("wpipe");
  await seedSkus(world.prisma, { A: 1_000 });
  worker = await startWorker(
    world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: String(WINDOW_SECONDS), PUBLISH_EVENTS: "true" }),
    { logger: quietLog, healthPort: 0 },
  );
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  parseQueue = createQueue(QueueName.Parse, redis, world.prefix);
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  deadQueue = createQueue(QueueName.Dead, redis, world.prefix);
  publishQueue = createQueue(QueueName.Publish, redis, world.prefix);
});
afterAll(async () => {
  await worker?.close();
  await Promise.all([parseQueue, applyQueue, deadQueue, publishQueue].map((q) => q?.close()));
  redis?.disconnect();
  await world.cleanup();
});

/** The waiting dead letter of `notificationId` from `queue`, if any (letter ids end with the job's timestamp). */
async function letterOf(queue: string, notificationId: string) {
  const letters = await deadQueue.getJobs(["waiting"], 0, -1, true);
  return letters.find((j) => j.data?.queue === queue && j.data?.notificationId === notificationId);
}

const notification = (id: string) =>
  world.prisma.notification.findUnique({ where: { id }, include: { events: { orderBy: { id: "asc" } } } });

describe("through the queues", () => {
  it("a notification enqueued as the ingress does ends APPLIED, publishes payment.succeeded, and both jobs complete", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 2 } });
    const job = v3Payment(world, { outTradeNo: otn, transactionId: "4200001001" });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("APPLIED", async () => (await notification(job.id))?.status === "APPLIED");
    expect((await orderOf(world.prisma, otn)).status).toBe("SUCCESS");
    const published = await waitFor("publish job", () => publishQueue.getJob(job.id));
    expect(publishJobSchema.parse(published.data)).toMatchObject({
      type: "payment.succeeded",
      outTradeNo: otn,
      orderStatus: "SUCCESS",
      transactionId: "4200001001",
      amount: 100,
    });
    expect(published.name).toBe("payment.succeeded");
    expect(JSON.stringify(published.data)).not.toContain("oPayerOpenid");
    await waitFor("apply job completed", async () => (await applyQueue.getJobState(job.id)) === "completed");
  });

  it("an order committed a moment after its notification is applied on a retry", async () => {
    const job = v3Payment(world, { outTradeNo: "T-pipe-late", total: 100 });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    const failed = await waitFor("first FAILED entry", async () =>
      (await notification(job.id))?.events.find((e) => e.kind === "FAILED"),
    );
    // The retry's delay as BullMQ stored it on the job when it moved it to delayed (`delay`, ms; ≥ 500 ms from now).
    const retried = await waitFor("apply job retried once", async () => {
      const j = await applyQueue.getJob(job.id);
      return j?.attemptsMade === 1 ? j : undefined;
    });
    expect(failed.detail).toMatchObject({ stage: "notify.apply", code: "ORDER_NOT_FOUND", attempt: 1 });
    expect((failed.detail as { retryInMs: unknown }).retryInMs).toBe(retried.delay);
    await seedOrder(world, { outTradeNo: "T-pipe-late", amountTotal: 100, items: { A: 1 } });
    await waitFor("APPLIED", async () => (await notification(job.id))?.status === "APPLIED", 10_000);
    const n = await notification(job.id);
    expect(n?.events.map((e) => e.kind)).toEqual(expect.arrayContaining(["RECEIVED", "FAILED", "APPLIED"]));
    expect(n?.attempts).toBeGreaterThanOrEqual(2);
  });

  it("an unknown order is retried for WORKER_UNKNOWN_ORDER_RETRY_SECONDS, dead-lettered, and can be replayed", async () => {
    const job = v3Payment(world, { outTradeNo: "T-pipe-never", total: 100 });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    const letter = await waitFor("dead letter", () => letterOf("notify.apply", job.id), 15_000);
    expect(letter.id).toMatch(new RegExp(`^apply\\.${job.id}\\.\\d+$`));
    const dead = deadLetterSchema.parse(letter.data);
    // The last try is scheduled at the end of the window, not a doubling later: measured from the apply job's
    // creation (the letter id ends with it) to the failure, not on the test's clock, which also counts parsing
    // and polling.
    const elapsed = dead.failedAt - Number(letter.id?.split(".").at(-1));
    expect(elapsed).toBeGreaterThanOrEqual(WINDOW_SECONDS * 1000 - 100);
    expect(elapsed).toBeLessThan(WINDOW_SECONDS * 1000 + 3_500);
    expect(dead).toMatchObject({
      queue: "notify.apply",
      code: "ORDER_NOT_FOUND",
      notificationId: job.id,
      outTradeNo: "T-pipe-never",
    });
    expect(dead.attemptsMade).toBeGreaterThanOrEqual(2);
    await waitFor("DEAD", async () => (await notification(job.id))?.status === "DEAD");

    await seedOrder(world, { outTradeNo: "T-pipe-never", amountTotal: 100, items: { A: 1 } });
    const outcomes = await replayDeadLetter(
      { connection: redis, prefix: world.prefix, prisma: world.prisma, actor: "test" },
      letter.id!,
    );
    expect(outcomes).toMatchObject([{ status: "replayed", queue: "notify.apply", notificationId: job.id }]);
    await waitFor("APPLIED after replay", async () => (await notification(job.id))?.status === "APPLIED");
    const kinds = (await notification(job.id))?.events.map((e) => e.kind) ?? [];
    expect(kinds.slice(-3)).toEqual(["DEAD_LETTERED", "REPLAYED", "APPLIED"]);
    expect(await deadQueue.getJob(letter.id!)).toBeUndefined();
  });

  it("a dead-lettered notification delivered again stays DEAD with a REDELIVERED entry; its letter still applies it", async () => {
    const job = v3Payment(world, { outTradeNo: "T-pipe-redelivered", total: 100 });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    const letter = await waitFor("dead letter", () => letterOf("notify.apply", job.id), 15_000);
    await waitFor("DEAD", async () => (await notification(job.id))?.status === "DEAD");

    // WeChat delivers it again once the ingress's receipt has expired (25 h): by then its parse job is gone (removed
    // an hour after it completed) while the failed apply job is kept for 7 days under the notification's id.
    await parseQueue.remove(job.id);
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("parse completed", async () => (await parseQueue.getJob(job.id))?.isCompleted());
    // Before: PROCESSING — and the apply job added under the failed one's id was collapsed into it, so no job ran.
    expect(await notification(job.id)).toMatchObject({ status: "DEAD", errorCode: "ORDER_NOT_FOUND" });
    const kinds = (await notification(job.id))?.events.map((e) => e.kind) ?? [];
    expect(kinds.slice(-2)).toEqual(["DEAD_LETTERED", "REDELIVERED"]);
    expect(await letterOf("notify.apply", job.id)).toBeDefined();

    await seedOrder(world, { outTradeNo: "T-pipe-redelivered", amountTotal: 100, items: { A: 1 } });
    const outcomes = await replayDeadLetter(
      { connection: redis, prefix: world.prefix, prisma: world.prisma },
      letter.id!,
    );
    expect(outcomes).toMatchObject([{ status: "replayed", notificationId: job.id }]);
    await waitFor("APPLIED after replay", async () => (await notification(job.id))?.status === "APPLIED");
  });

  it("a payload version the worker does not know is dead-lettered at once, not misread", async () => {
    const job = { ...v3Payment(world, { outTradeNo: "T-pipe-v2" }), v: 2 };
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    const letter = await waitFor("dead letter", () => letterOf("notify.parse", job.id));
    expect(deadLetterSchema.parse(letter.data)).toMatchObject({
      code: "JOB_VERSION_UNSUPPORTED",
      queue: "notify.parse",
      attemptsMade: 1,
    });
    await applyQueue.add("apply", { v: 1, notificationId: "x-invalid" }, { jobId: "x-invalid" });
    const invalid = await waitFor("dead letter", () => letterOf("notify.apply", "x-invalid"));
    expect(deadLetterSchema.parse(invalid.data)).toMatchObject({ code: "JOB_INVALID", notificationId: "x-invalid" });

    // Replaying everything puts both back once; they fail the same way again and come back as new letters
    // (a replayed job is a new instance, so its letter cannot collide with the one being replayed).
    const outcomes = await replayDeadLetter({ connection: redis, prefix: world.prefix, prisma: world.prisma }, "--all");
    expect(outcomes.map((o) => [o.id, o.status]).sort()).toEqual(
      [
        [invalid.id, "replayed"],
        [letter.id, "replayed"],
      ].sort(),
    );
    const again = await waitFor("letters back", async () => {
      const [a, b] = [await letterOf("notify.apply", "x-invalid"), await letterOf("notify.parse", job.id)];
      return a && b ? [a, b] : null;
    });
    expect(again.map((j) => j.id)).not.toContain(invalid.id);
    expect(again.map((j) => j.id)).not.toContain(letter.id);
  });

  it("a dead letter's DEAD mark waits for the database when it refuses it on the job's last attempt", async () => {
    // PostgreSQL refuses the first two DEAD marks as a server shutting down would (SQLSTATE 57P01, transient).
    await world.prisma.$executeRawUnsafe("CREATE SEQUENCE dead_mark_refusals");
    await world.prisma.$executeRawUnsafe(`CREATE FUNCTION refuse_dead_mark() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status = 'DEAD' AND OLD.status <> 'DEAD' AND nextval('dead_mark_refusals') <= 2 THEN
          RAISE EXCEPTION 'refused by the test' USING ERRCODE = '57P01';
        END IF;
        RETURN NEW;
      END $$`);
    await world.prisma.$executeRawUnsafe(
      `CREATE TRIGGER refuse_dead_mark BEFORE UPDATE ON "Notification" FOR EACH ROW EXECUTE FUNCTION refuse_dead_mark()`,
    );
    try {
      const job = v3Payment(world, { outTradeNo: "T-pipe-dead-mark", apiV3Key: Buffer.from("z".repeat(32)) });
      // One attempt: no later attempt of the job could do the marking.
      await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id, attempts: 1 });
      await waitFor("DEAD", async () => (await notification(job.id))?.status === "DEAD");
      const refusals = await world.prisma.$queryRawUnsafe<{ last_value: bigint }[]>(
        "SELECT last_value FROM dead_mark_refusals",
      );
      expect(Number(refusals[0]?.last_value)).toBe(3);
      expect((await notification(job.id))?.events.map((e) => e.kind)).toContain("DEAD_LETTERED");
      expect(await letterOf("notify.parse", job.id)).toBeDefined();
    } finally {
      await world.prisma.$executeRawUnsafe(`DROP TRIGGER refuse_dead_mark ON "Notification"`);
      await world.prisma.$executeRawUnsafe("DROP FUNCTION refuse_dead_mark()");
      await world.prisma.$executeRawUnsafe("DROP SEQUENCE dead_mark_refusals");
    }
  });

  it("a notification this worker's key cannot decrypt is retried for the window, then DEAD with DECRYPT_FAILED", async () => {
    const job = v3Payment(world, { outTradeNo: "T-pipe-key", apiV3Key: Buffer.from("z".repeat(32)) });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    const letter = await waitFor("dead letter", () => letterOf("notify.parse", job.id), 15_000);
    expect(deadLetterSchema.parse(letter.data)).toMatchObject({ code: "DECRYPT_FAILED" });
    await waitFor("DEAD", async () => (await notification(job.id))?.status === "DEAD");
    const row = await notification(job.id);
    expect(row).toMatchObject({ errorCode: "DECRYPT_FAILED" });
    expect(row?.attempts).toBeGreaterThanOrEqual(2);
    // BullMQ draws a parse retry's jitter itself: the entry gives its range (1 s · 2^0, jitter 0.5).
    expect(row?.events.find((e) => e.kind === "FAILED")?.detail).toMatchObject({
      stage: "notify.parse",
      attempt: 1,
      retryInMs: null,
      retryInMsRange: [500, 1_000],
    });
  });

  it("a notification refused at parse for good (PAYLOAD_INVALID) is DEAD at its first attempt with no FAILED entry: a FAILED entry promises a next attempt", async () => {
    const job = v3Payment(world, { outTradeNo: "T-pipe-foreign", mchid: "1900000999" });
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("dead letter", () => letterOf("notify.parse", job.id), 15_000);
    await waitFor("DEAD", async () => (await notification(job.id))?.status === "DEAD");
    const row = await notification(job.id);
    expect(row).toMatchObject({ errorCode: "PAYLOAD_INVALID" });
    expect(row?.events.map((e) => e.kind)).toEqual(["RECEIVED", "DEAD_LETTERED"]);
    expect(row?.events[1]?.detail).toMatchObject({ stage: "notify.parse", code: "PAYLOAD_INVALID", attempt: 1 });
  });

  it("a merchant's APIv3 key rotated in WeChat before its row here: the notifications of the gap apply once the row is updated within the window", async () => {
    const m = { mchid: "1900000791", appid: "wxpiperotation" };
    const [oldKey, newKey] = ["p".repeat(32), "q".repeat(32)];
    await world.prisma.merchant.create({ data: { ...m, apiV3Key: oldKey, apiV2Key: null } });
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 }, ...m });
    // WeChat encrypts with the new key; the row still holds the old one.
    const job = {
      ...v3Payment(world, { outTradeNo: otn, total: 100, ...m, apiV3Key: Buffer.from(newKey) }),
      mchid: m.mchid,
    };
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("first attempt failed", async () => (await notification(job.id))?.errorCode === "DECRYPT_FAILED");
    await world.prisma.merchant.update({
      where: { mchid: m.mchid },
      data: { apiV3Key: newKey, apiV3KeyPrevious: oldKey },
    });
    await waitFor("APPLIED", async () => (await notification(job.id))?.status === "APPLIED", 15_000);
    expect(await letterOf("notify.parse", job.id)).toBeUndefined();
  });

  it("the replay CLI puts a dead letter back (npm run replay -w @wpn/worker -- <id>)", async () => {
    const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
    const job = v3Payment(world, { outTradeNo: otn });
    const letter: DeadLetter = {
      v: 1,
      queue: "notify.parse",
      jobName: PARSE_JOB_NAME,
      jobId: job.id,
      notificationId: job.id,
      outTradeNo: null,
      code: "DB_UNAVAILABLE",
      message: "retries exhausted during an outage",
      attemptsMade: 12,
      failedAt: Date.now(),
      data: job,
    };
    await deadQueue.add(DEAD_JOB_NAME, letter, { jobId: `parse.${job.id}` });
    const { code, out } = await runReplayCli([`parse.${job.id}`], world.env);
    expect(code, out).toBe(0);
    expect(out).toContain(`replayed\tparse.${job.id}\tnotify.parse\t${job.id}`);
    await waitFor("APPLIED after CLI replay", async () => (await notification(job.id))?.status === "APPLIED");
  });

  it("replay --all: a letter whose REPLAYED record the database refuses is reported failed, the others replayed, exit 1", async () => {
    // A prefix of its own: --all replays every letter of the prefix, and this file's other letters must stay.
    const prefix = testQueuePrefix("wcli");
    const dead = createQueue(QueueName.Dead, redis, prefix);
    const stage = createQueue(QueueName.Apply, redis, prefix);
    const ids = ["cli-all-1", "cli-all-2", "cli-all-3"];
    await world.prisma.notification.create({
      data: { id: "cli-all-2", eventType: "TRANSACTION.SUCCESS", receivedAt: new Date(), body: "{}", status: "DEAD" },
    });
    await world.prisma.$executeRawUnsafe(`CREATE FUNCTION refuse_replayed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.kind = 'REPLAYED' AND NEW."notificationId" = 'cli-all-2' THEN
          RAISE EXCEPTION 'REPLAYED refused by the test';
        END IF;
        RETURN NEW;
      END $$`);
    await world.prisma.$executeRawUnsafe(
      `CREATE TRIGGER refuse_replayed BEFORE INSERT ON "NotificationEvent" FOR EACH ROW EXECUTE FUNCTION refuse_replayed()`,
    );
    try {
      for (const [i, id] of ids.entries()) {
        const letter: DeadLetter = {
          v: 1,
          queue: QueueName.Apply,
          jobName: "apply",
          jobId: id,
          notificationId: id,
          outTradeNo: null,
          code: "DB_UNAVAILABLE",
          message: "retries exhausted during an outage",
          attemptsMade: 12,
          failedAt: Date.now(),
          data: { v: 1, notificationId: id },
        };
        await dead.add(DEAD_JOB_NAME, letter, { jobId: `apply.${id}.${1000 + i}` });
      }
      const { code, out } = await runReplayCli(["--all"], { ...world.env, QUEUE_PREFIX: prefix });
      // Before: the throw ended the loop; the CLI printed a stack and nothing of the letter it had replayed.
      expect(code, out).toBe(1);
      expect(out).toContain("replayed\tapply.cli-all-1.1000\tnotify.apply\tcli-all-1\n");
      expect(out).toMatch(/failed\tapply\.cli-all-2\.1001\tnotify\.apply\tcli-all-2\t.*REPLAYED refused by the test/);
      expect(out).toContain("replayed\tapply.cli-all-3.1002\tnotify.apply\tcli-all-3\n");
      expect(out).toContain("3 letter(s): 2 replayed, 1 failed\n");
      expect(await stage.getJob("cli-all-1")).toBeDefined();
      expect(await stage.getJob("cli-all-2")).toBeUndefined();
      expect(await stage.getJob("cli-all-3")).toBeDefined();
      expect(await dead.getJob("apply.cli-all-2.1001")).toBeDefined();
      expect((await notification("cli-all-2"))?.status).toBe("DEAD");
    } finally {
      await world.prisma.$executeRawUnsafe(`DROP TRIGGER refuse_replayed ON "NotificationEvent"`);
      await world.prisma.$executeRawUnsafe("DROP FUNCTION refuse_replayed()");
      await Promise.all([dead.close(), stage.close()]);
      await deletePrefix(prefix);
    }
  });

  it("serves /health/live, /health/ready and /metrics", async () => {
    const base = `http://127.0.0.1:${worker.healthPort}`;
    expect((await fetch(`${base}/health/live`)).status).toBe(200);
    const ready = await fetch(`${base}/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { workers: "ok", redis: "ok", postgres: "ok" } });
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/wpn_worker_jobs_total\{queue="notify.apply",result="completed"\} [1-9]/);
    // Two: the unknown order's, and the one delivered again while dead-lettered (parse outcome DEAD).
    expect(text).toMatch(/wpn_worker_dead_letters_total\{queue="notify.apply",code="ORDER_NOT_FOUND"\} 2/);
    expect(text).toMatch(/wpn_worker_outcomes_total\{stage="notify.parse",outcome="DEAD"\} 1/);
    expect(text).toMatch(/wpn_worker_outcomes_total\{stage="notify.apply",outcome="APPLIED"\}/);
    expect(text).toContain("wpn_worker_notification_latency_seconds_bucket");
  });
});

describe("PostgreSQL outage", () => {
  it("a job that meets it waits without using an attempt (the worker pauses, not ready); it is applied once PostgreSQL is back", async () => {
    const proxy = await startDbProxy(world.db.url);
    const prefix = testQueuePrefix("wdown");
    const outageWorker = await startWorker(
      world.config({ DATABASE_URL: proxy.via(world.db.url), QUEUE_PREFIX: prefix, PG_CONNECT_TIMEOUT_MS: "500" }),
      { logger: quietLog, healthPort: 0 },
    );
    const queue = createQueue(QueueName.Parse, redis, prefix);
    try {
      const otn = await seedOrder(world, { amountTotal: 100, items: { A: 1 } });
      const before = (await stockOf(world.prisma)).A ?? 0;
      await proxy.down();
      const job = v3Payment(world, { outTradeNo: otn });
      await queue.add(PARSE_JOB_NAME, job, { jobId: job.id });
      await waitFor("the job put back", async () =>
        (await outageWorker.metrics.registry.getSingleMetricAsString("wpn_worker_db_deferred_jobs_total")).includes(
          'queue="notify.parse"} 1',
        ),
      );
      expect((await queue.getJob(job.id))?.attemptsMade).toBe(0);
      const ready = await fetch(`http://127.0.0.1:${outageWorker.healthPort}/health/ready`);
      expect(ready.status).toBe(503);
      await proxy.up();
      await waitFor("APPLIED", async () => (await notification(job.id))?.status === "APPLIED", 20_000);
      expect((await stockOf(world.prisma)).A).toBe(before - 1);
      expect((await queue.getJob(job.id))?.attemptsMade).toBe(1);
    } finally {
      await outageWorker.close();
      await queue.close();
      await proxy.close();
      await deletePrefix(prefix);
    }
  });
});
