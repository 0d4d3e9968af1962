import { markNotificationDead, recordReplay } from "@wpn/db";
import {
  APPLY_JOB_NAME,
  type ApplyJob,
  createQueue,
  createRedisConnection,
  DEAD_JOB_NAME,
  type DeadLetter,
  deadLetterJobId,
  QueueName,
  replayDeadLetter,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { type JobsOptions, type Queue, UnrecoverableError, Worker } from "bullmq";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { loggedIn } from "./support/client.ts";
import { randomId, seedNotification } from "./support/seed.ts";

let d: TestDashboard;
let dead: Queue;
let apply: Queue;

beforeAll(async () => {
  d = await startDashboard("dash_dlq");
  dead = createQueue(QueueName.Dead, d.redis, d.prefix);
  apply = createQueue(QueueName.Apply, d.redis, d.prefix);
});
afterAll(async () => {
  await dead?.close();
  await apply?.close();
  await d?.close();
});

function applyPayload(notificationId: string, outTradeNo: string): ApplyJob {
  return {
    v: 1,
    notificationId,
    api: "v3",
    kind: "payment",
    mchid: "1900000109",
    outTradeNo,
    receivedAt: Date.now() - 60_000,
    body: '{"id":"x","resource":{"ciphertext":"ENCRYPTED"}}',
  };
}

/**
 * What the apply worker does on a permanent failure: a DEAD notification and a letter in notify.dead (`options` for a
 * letter in another state: delayed, prioritized).
 */
async function deadLetter(
  options: JobsOptions = {},
): Promise<{ notificationId: string; letterId: string; payload: ApplyJob }> {
  const outTradeNo = randomId("OTN");
  const notificationId = await seedNotification(d.database.db.prisma, {
    status: "DEAD",
    attempts: 20,
    errorCode: "ORDER_NOT_FOUND",
    lastError: "no order with this out_trade_no",
    outTradeNo,
  });
  const letterId = deadLetterJobId(QueueName.Apply, notificationId, Date.now());
  await d.database.db.prisma.notificationEvent.create({
    data: { notificationId, kind: "DEAD_LETTERED", detail: { code: "ORDER_NOT_FOUND", deadLetterId: letterId } },
  });
  const payload = applyPayload(notificationId, outTradeNo);
  const letter: DeadLetter = {
    v: 1,
    queue: QueueName.Apply,
    jobName: APPLY_JOB_NAME,
    jobId: notificationId,
    notificationId,
    outTradeNo,
    code: "ORDER_NOT_FOUND",
    message: "no order with this out_trade_no after 20 attempts",
    attemptsMade: 20,
    failedAt: Date.now(),
    data: payload,
  };
  await dead.add(DEAD_JOB_NAME, letter, { ...options, jobId: letterId });
  return { notificationId, letterId, payload };
}

/** Runs one real apply job to failure, as the worker would have before dead-lettering it. */
async function failInApply(payload: ApplyJob): Promise<void> {
  await apply.add(APPLY_JOB_NAME, payload, { jobId: payload.notificationId, attempts: 1 });
  const connection = createRedisConnection(TEST_REDIS_URL, "worker");
  const worker = new Worker(
    QueueName.Apply,
    async () => {
      throw new UnrecoverableError("ORDER_NOT_FOUND");
    },
    { connection, prefix: d.prefix, autorun: false },
  );
  const failed = new Promise<void>((resolve) => {
    worker.on("failed", (job) => {
      if (job?.id === payload.notificationId) resolve();
    });
  });
  void worker.run();
  await failed;
  await worker.close();
  connection.disconnect();
  expect(await (await apply.getJob(payload.notificationId))?.getState()).toBe("failed");
}

describe("dead-letter replay", () => {
  it("lists dead letters with their reason and a link to the notification", async () => {
    const { notificationId, letterId } = await deadLetter();
    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const page = await viewer.get("/dead-letters");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(letterId);
    expect(page.body).toContain(`href="/notifications/${notificationId}"`);
    expect(page.body).toContain("ORDER_NOT_FOUND");
    // Viewers get no replay controls.
    expect(page.body).not.toContain(`name="ids" value="${letterId}"`);
    expect(page.body).toContain("Replaying needs the operator role.");
    // The notification's timeline shows the letter too.
    const timeline = await viewer.get(`/notifications/${notificationId}`);
    expect(timeline.body).toContain("Dead-lettered from notify.apply after 20 attempt(s): ORDER_NOT_FOUND");
    expect(timeline.body).toContain("DEAD_LETTERED");
  });

  it("lists letters in every state, unreadable ones too, newest first, in a few Redis calls however many there are", async () => {
    // Dead-lettered a second apart (the job's timestamp), so the order is the page's and not the adds' millisecond.
    const ago = (seconds: number) => Date.now() - seconds * 1000;
    const waiting = await deadLetter({ timestamp: ago(4) });
    const delayed = await deadLetter({ timestamp: ago(3), delay: 3_600_000 });
    const prioritized = await deadLetter({ timestamp: ago(2), priority: 1 });
    const unreadable = `apply.unreadable-${randomId("")}`;
    await dead.add(DEAD_JOB_NAME, { v: 99 }, { jobId: unreadable, timestamp: ago(1) });
    for (let i = 0; i < 20; i++) await deadLetter();
    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const sent = vi.spyOn(d.redis, "sendCommand");
    let page: Awaited<ReturnType<typeof viewer.get>>;
    let commands: string[];
    try {
      page = await viewer.get("/dead-letters");
      commands = sent.mock.calls.map(([command]) => command.name);
    } finally {
      sent.mockRestore();
    }
    expect(page.statusCode).toBe(200);
    for (const { letterId, notificationId } of [waiting, delayed, prioritized]) {
      expect(page.body).toContain(`<td class="mono">${letterId}</td>`);
      expect(page.body).toContain(`href="/notifications/${notificationId}"`);
    }
    expect(page.body).toMatch(new RegExp(`${unreadable}</td>\\s*<td colspan="6">.*unreadable letter.*</td>`));
    // Newest first.
    const at = (id: string) => page.body.indexOf(`<td class="mono">${id}</td>`);
    expect(at(unreadable)).toBeLessThan(at(prioritized.letterId));
    expect(at(prioritized.letterId)).toBeLessThan(at(delayed.letterId));
    expect(at(delayed.letterId)).toBeLessThan(at(waiting.letterId));
    // The letters with their state in one call, and the counts: not one or two lookups per letter (up to 1,000).
    expect(commands, commands.join(" ")).toHaveLength(2);
  });

  it("puts a replayed letter back in its stage queue, with an AuditLog row and a REPLAYED event", async () => {
    const { notificationId, letterId, payload } = await deadLetter();
    await failInApply(payload);
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const listed = await operator.get("/dead-letters");
    expect(listed.body).toContain(`name="ids" value="${letterId}"`);

    const response = await operator.post("/dead-letters/replay", { id: letterId });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toContain("replayed=1");

    const job = await apply.getJob(notificationId);
    expect(await job?.getState()).toBe("waiting");
    expect(job?.name).toBe(APPLY_JOB_NAME);
    expect(job?.data).toEqual(payload);
    expect(job?.attemptsMade).toBe(0);
    expect(await dead.getJob(letterId)).toBeUndefined();

    const audit = await d.database.db.prisma.auditLog.findFirst({
      where: { action: "dead_letter.replay", target: letterId },
    });
    expect(audit).toMatchObject({ actor: "olga", role: "operator" });
    expect(audit?.detail).toMatchObject({ outcome: "replayed", queue: QueueName.Apply, notificationId });

    const notification = await d.database.db.prisma.notification.findUniqueOrThrow({
      where: { id: notificationId },
      include: { events: { orderBy: { id: "asc" } } },
    });
    expect(notification.status).toBe("PROCESSING");
    expect(notification.events.map((e) => e.kind)).toEqual(["DEAD_LETTERED", "REPLAYED"]);
    expect(notification.events[1]?.detail).toMatchObject({
      actor: "olga",
      queue: QueueName.Apply,
      previousCode: "ORDER_NOT_FOUND",
    });

    const after = await operator.get(`/dead-letters?replayed=1`);
    expect(after.body).toContain("replayed: 1");
    expect(after.body).not.toContain(`value="${letterId}"`);
  });

  it("a settled notification's letter (applied, its event not added): the timeline shows it APPLIED with the letter; the replay keeps APPLIED and records REPLAYED", async () => {
    const outTradeNo = randomId("OTN");
    const notificationId = await seedNotification(d.database.db.prisma, {
      status: "APPLIED",
      appliedAt: new Date(),
      outTradeNo,
    });
    const payload = applyPayload(notificationId, outTradeNo);
    const letterId = deadLetterJobId(QueueName.Apply, notificationId, Date.now());
    const code = "QUEUE_UNAVAILABLE";
    const message = "publish event not added: Redis refused";
    await dead.add(
      DEAD_JOB_NAME,
      {
        v: 1,
        queue: QueueName.Apply,
        jobName: APPLY_JOB_NAME,
        jobId: notificationId,
        notificationId,
        outTradeNo,
        code,
        message,
        attemptsMade: 20,
        failedAt: Date.now(),
        data: payload,
      } satisfies DeadLetter,
      { jobId: letterId },
    );
    // As the worker's stage records it: settled, the row only gets the DEAD_LETTERED entry.
    const marked = await markNotificationDead(d.database.db.prisma, {
      notificationId,
      stage: QueueName.Apply,
      code,
      message,
      attempt: 20,
      deadLetterId: letterId,
    });
    expect(marked).toBe(false);

    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const timeline = await operator.get(`/notifications/${notificationId}`);
    expect(timeline.body).toContain('<dt>Status</dt><dd><span class="badge ok">APPLIED</span></dd>');
    expect(timeline.body).toContain("DEAD_LETTERED");
    // Before: no entry, so the page did not find the letter at all.
    expect(timeline.body).toContain("Dead-lettered from notify.apply after 20 attempt(s): QUEUE_UNAVAILABLE");

    const response = await operator.post("/dead-letters/replay", { id: letterId });
    expect(response.headers.location).toContain("replayed=1");
    expect(await (await apply.getJob(notificationId))?.getState()).toBe("waiting");
    const notification = await d.database.db.prisma.notification.findUniqueOrThrow({
      where: { id: notificationId },
      include: { events: { orderBy: { id: "asc" } } },
    });
    expect(notification.status).toBe("APPLIED");
    expect(notification.events.map((e) => e.kind)).toEqual(["DEAD_LETTERED", "REPLAYED"]);
    const after = await operator.get(`/notifications/${notificationId}`);
    expect(after.body).toContain('<dt>Status</dt><dd><span class="badge ok">APPLIED</span></dd>');
    expect(after.body).toContain("REPLAYED");
    // The replayed letter is gone from notify.dead: the page lists no letter any more.
    expect(after.body).not.toContain("Dead-lettered from notify.apply");
  });

  it("replays the selected letters only", async () => {
    const a = await deadLetter();
    const b = await deadLetter();
    const c = await deadLetter();
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const response = await operator.post("/dead-letters/replay", { ids: [a.letterId, b.letterId] });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toContain("replayed=2");
    expect(await (await apply.getJob(a.notificationId))?.getState()).toBe("waiting");
    expect(await (await apply.getJob(b.notificationId))?.getState()).toBe("waiting");
    expect(await apply.getJob(c.notificationId)).toBeUndefined();
    expect(await dead.getJob(c.letterId)).toBeDefined();
    const audits = await d.database.db.prisma.auditLog.count({
      where: { action: "dead_letter.replay", target: { in: [a.letterId, b.letterId, c.letterId] } },
    });
    expect(audits).toBe(2);
  });

  it("reports and audits a letter that is not there", async () => {
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const response = await operator.post("/dead-letters/replay", { id: "apply.does-not-exist" });
    expect(response.headers.location).toContain("not-found=1");
    const audit = await d.database.db.prisma.auditLog.findFirst({ where: { target: "apply.does-not-exist" } });
    expect(audit?.detail).toMatchObject({ outcome: "not-found" });
  });

  it("a letter whose job cannot be put back is reported failed and audited; the letter stays and replays later", async () => {
    const { notificationId, letterId } = await deadLetter();
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    // The add reads the stage queue's `meta` hash first: a `meta` that is not a hash fails it before it writes
    // anything, as a Redis refusing writes would.
    const meta = `${d.prefix}:${QueueName.Apply}:meta`;
    const saved = await d.redis.dumpBuffer(meta);
    await d.redis.set(meta, "not a hash");
    let response: Awaited<ReturnType<typeof operator.post>>;
    try {
      response = await operator.post("/dead-letters/replay", { id: letterId });
    } finally {
      await d.redis.del(meta);
      if (saved) await d.redis.restore(meta, 0, saved);
    }
    // Before: the replay threw and the operator got a 500 with nothing audited for the failure.
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toContain("failed=1");
    expect((await operator.get("/dead-letters?failed=1")).body).toContain("failed: 1");
    const audits = await d.database.db.prisma.auditLog.findMany({
      where: { action: "dead_letter.replay", target: letterId },
      orderBy: { id: "asc" },
    });
    // The hook recorded the replay before the add; the failure follows it.
    expect(audits.map((a) => a.detail)).toEqual([
      expect.objectContaining({ outcome: "replayed", notificationId }),
      { outcome: "failed", message: expect.stringMatching(/WRONGTYPE/) },
    ]);
    expect(await dead.getJob(letterId)).toBeDefined();
    expect(await apply.getJob(notificationId)).toBeUndefined();
    // The record the hook wrote is undone: the notification does not say a job waits while only the letter holds it.
    const undone = await d.database.db.prisma.notification.findUniqueOrThrow({
      where: { id: notificationId },
      include: { events: { orderBy: { id: "asc" } } },
    });
    expect(undone.status).toBe("DEAD");
    expect(undone.events.map((e) => e.kind)).toEqual(["DEAD_LETTERED", "REPLAYED", "REPLAY_FAILED"]);
    expect(undone.events[2]?.detail).toMatchObject({ actor: "olga", message: expect.stringMatching(/WRONGTYPE/) });

    expect((await operator.post("/dead-letters/replay", { id: letterId })).headers.location).toContain("replayed=1");
    expect(await (await apply.getJob(notificationId))?.getState()).toBe("waiting");
    expect(await dead.getJob(letterId)).toBeUndefined();
  });

  it("a replay that stopped after its record (a CLI replay killed there) is completed by the next: audited resumed, one REPLAYED", async () => {
    const { notificationId, letterId } = await deadLetter();
    const prisma = d.database.db.prisma;
    // The state a replay killed between its record and the add leaves (apps/worker/test/replay-crash.test.ts kills a
    // real one): recorded, no job back, the letter kept.
    const stopped = await replayDeadLetter(
      {
        connection: d.redis,
        prefix: d.prefix,
        onReplayed: async (letter, attempt) => {
          await recordReplay(prisma, {
            ...attempt,
            notificationId,
            queue: letter.queue,
            previousCode: letter.code,
            actor: "cli",
          });
          throw new Error("killed");
        },
      },
      letterId,
    );
    expect(stopped.status).toBe("failed");
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const response = await operator.post("/dead-letters/replay", { id: letterId });
    expect(response.headers.location).toContain("resumed=1");
    expect((await operator.get(response.headers.location ?? "")).body).toMatch(/class="flash ok"[^>]*>resumed: 1</);
    const audits = await prisma.auditLog.findMany({
      where: { action: "dead_letter.replay", target: letterId },
      orderBy: { id: "asc" },
    });
    expect(audits.map((a) => a.detail)).toEqual([
      { outcome: "resumed", message: expect.stringMatching(/recorded earlier/) },
    ]);
    const events = await prisma.notificationEvent.findMany({ where: { notificationId }, orderBy: { id: "asc" } });
    expect(events.map((e) => e.kind)).toEqual(["DEAD_LETTERED", "REPLAYED"]);
    expect(await (await apply.getJob(notificationId))?.getState()).toBe("waiting");
    expect(await dead.getJob(letterId)).toBeUndefined();
  });

  it("a replay whose AuditLog row cannot be written is not recorded either: DEAD, letter kept, nothing put back", async () => {
    const { notificationId, letterId, payload } = await deadLetter();
    await failInApply(payload);
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const prisma = d.database.db.prisma;
    // Only the `replayed` audit row fails (it stands for any database error on that one statement).
    await prisma.$executeRawUnsafe(`CREATE FUNCTION refuse_replayed_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.action = 'dead_letter.replay' AND NEW.detail->>'outcome' = 'replayed' THEN
          RAISE EXCEPTION 'audit write failed';
        END IF;
        RETURN NEW;
      END $$`);
    await prisma.$executeRawUnsafe(
      `CREATE TRIGGER refuse_replayed_audit BEFORE INSERT ON "AuditLog" FOR EACH ROW EXECUTE FUNCTION refuse_replayed_audit()`,
    );
    let response: Awaited<ReturnType<typeof operator.post>>;
    try {
      response = await operator.post("/dead-letters/replay", { id: letterId });
    } finally {
      await prisma.$executeRawUnsafe(`DROP TRIGGER refuse_replayed_audit ON "AuditLog"`);
      await prisma.$executeRawUnsafe(`DROP FUNCTION refuse_replayed_audit()`);
    }
    expect(response.headers.location).toContain("failed=1");
    // Before: the REPLAYED record had committed on its own, so the notification read PROCESSING with no job
    // waiting and no REPLAY_FAILED event. Now the audit row is in the record's transaction: neither is written.
    const notification = await prisma.notification.findUniqueOrThrow({
      where: { id: notificationId },
      include: { events: { orderBy: { id: "asc" } } },
    });
    expect(notification.status).toBe("DEAD");
    expect(notification.events.map((e) => e.kind)).toEqual(["DEAD_LETTERED"]);
    const audits = await prisma.auditLog.findMany({ where: { target: letterId }, orderBy: { id: "asc" } });
    expect(audits.map((a) => a.detail)).toEqual([
      { outcome: "failed", message: expect.stringMatching(/audit write failed/) },
    ]);
    expect(await apply.getJob(notificationId)).toBeUndefined();
    expect(await dead.getJob(letterId)).toBeDefined();
    // The letter still holds the notification: replayed again, it goes back with its record.
    expect((await operator.post("/dead-letters/replay", { id: letterId })).headers.location).toContain("replayed=1");
    expect(await (await apply.getJob(notificationId))?.getState()).toBe("waiting");
    expect((await prisma.notification.findUniqueOrThrow({ where: { id: notificationId } })).status).toBe("PROCESSING");
  });

  it("an id naming no letter (BullMQ's own keys, integer-looking ids) is not-found and the other letters are replayed", async () => {
    const a = await deadLetter();
    const b = await deadLetter();
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    // notify.dead's keys exist (letters were added): `events` is a stream, `meta` a hash, `id` a counter.
    const response = await operator.post("/dead-letters/replay", {
      ids: [a.letterId, "events", "meta", "id", "12345", b.letterId],
    });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toContain("replayed=2");
    expect(response.headers.location).toContain("not-found=4");
    expect(await (await apply.getJob(a.notificationId))?.getState()).toBe("waiting");
    expect(await (await apply.getJob(b.notificationId))?.getState()).toBe("waiting");
    const audit = await d.database.db.prisma.auditLog.findFirst({ where: { target: "events" } });
    expect(audit?.detail).toMatchObject({ outcome: "not-found" });
  });

  it("refuses a selection with a control character in an id (400 BAD_REQUEST) before replaying any letter", async () => {
    const a = await deadLetter();
    const b = await deadLetter();
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    // Before: `a` was replayed, then the audit row of the bad id failed (PostgreSQL refuses NUL in text): a 500,
    // and `b` was never replayed.
    for (const bad of ["x\u0000y", "apply.x\u0007"]) {
      const response = await operator.post("/dead-letters/replay", { ids: [a.letterId, bad, b.letterId] });
      expect(response.statusCode, JSON.stringify(bad)).toBe(400);
      expect(response.body).toContain("BAD_REQUEST");
    }
    expect(await apply.getJob(a.notificationId)).toBeUndefined();
    expect(await apply.getJob(b.notificationId)).toBeUndefined();
    expect(await dead.getJob(a.letterId)).toBeDefined();
    expect(await dead.getJob(b.letterId)).toBeDefined();
  });

  it("refuses a viewer (403) and a forged CSRF token, and nothing changes", async () => {
    const { notificationId, letterId } = await deadLetter();
    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    expect((await viewer.post("/dead-letters/replay", { id: letterId })).statusCode).toBe(403);

    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    expect((await operator.post("/dead-letters/replay", { id: letterId, _csrf: "forged" })).statusCode).toBe(403);
    expect(
      (await operator.post("/dead-letters/replay", { id: letterId }, { origin: "https://evil.example" })).statusCode,
    ).toBe(403);

    expect(await dead.getJob(letterId)).toBeDefined();
    expect(await apply.getJob(notificationId)).toBeUndefined();
    expect(await d.database.db.prisma.auditLog.count({ where: { target: letterId } })).toBe(0);
    const notification = await d.database.db.prisma.notification.findUniqueOrThrow({ where: { id: notificationId } });
    expect(notification.status).toBe("DEAD");
  });

  it("answers a viewer's replay form in a browser with a 403 page, as other refusals, and a script with the JSON", async () => {
    const { notificationId, letterId } = await deadLetter();
    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const browser = {
      accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      referer: "http://dashboard.test/dead-letters?state=failed",
    };
    const page = await viewer.post("/dead-letters/replay", { id: letterId }, browser);
    expect(page.statusCode).toBe(403);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.body).toContain("<h1>403 FORBIDDEN</h1>");
    expect(page.body).toContain("The action was not carried out.");
    expect(page.body).toContain('<a href="/dead-letters?state=failed">');
    const script = await viewer.post("/dead-letters/replay", { id: letterId }, { accept: "application/json" });
    expect(script.statusCode).toBe(403);
    expect(script.json()).toEqual({ error: "FORBIDDEN", message: "operator role required" });
    expect(await dead.getJob(letterId)).toBeDefined();
    expect(await apply.getJob(notificationId)).toBeUndefined();
    expect(await d.database.db.prisma.auditLog.count({ where: { target: letterId } })).toBe(0);
  });

  it("answers an operator's form whose Origin is not this host (a proxy without X-Forwarded-Host) in a browser with a page", async () => {
    const { letterId } = await deadLetter();
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const page = await operator.post(
      "/dead-letters/replay",
      { id: letterId },
      { accept: "text/html,application/xhtml+xml,*/*;q=0.8", origin: "https://console.example.com" },
    );
    expect(page.statusCode).toBe(403);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.body).toContain("<h1>403 CSRF_ORIGIN</h1>");
    const script = await operator.post(
      "/dead-letters/replay",
      { id: letterId },
      { origin: "https://evil.example", accept: "*/*" },
    );
    expect(script.json()).toEqual({ error: "CSRF_ORIGIN", message: "cross-origin request refused" });
    expect(await dead.getJob(letterId)).toBeDefined();
    expect(await d.database.db.prisma.auditLog.count({ where: { target: letterId } })).toBe(0);
  });
});
