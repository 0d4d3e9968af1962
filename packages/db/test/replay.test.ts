import { type Prisma, type PrismaClient, recordReplay, recordReplayFailed } from "@wpn/db";
import { createTestDatabase, type TestDatabase, whileRowChanges } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insertNotification } from "./support/payments.ts";

let tdb: TestDatabase;
let prisma: PrismaClient;
beforeAll(async () => {
  tdb = await createTestDatabase("dbreplay");
  prisma = tdb.db.prisma;
});
afterAll(async () => {
  await tdb?.drop();
});

/** The letter of `notificationId`'s job in `queue`, as the worker names it. */
const letterOf = (notificationId: string, queue = "notify.apply") =>
  `${queue.slice("notify.".length)}.${notificationId}.1`;

const replay = (notificationId: string, queue = "notify.apply", fence = 1) =>
  recordReplay(prisma, {
    letterId: letterOf(notificationId, queue),
    fence,
    notificationId,
    queue,
    previousCode: "DB_UNAVAILABLE",
    actor: "test",
  });

const undo = (notificationId: string, queue = "notify.apply", fence = 1) =>
  recordReplayFailed(prisma, {
    letterId: letterOf(notificationId, queue),
    fence,
    notificationId,
    queue,
    message: "add refused",
    actor: "test",
  });

async function stateOf(id: string): Promise<{ status: string | undefined; events: string[] }> {
  const rows = await prisma.$queryRaw<{ status: string }[]>`SELECT status::text FROM "Notification" WHERE id = ${id}`;
  const events = await prisma.$queryRaw<{ kind: string }[]>`
    SELECT kind FROM "NotificationEvent" WHERE "notificationId" = ${id} ORDER BY id`;
  return { status: rows[0]?.status, events: events.map((e) => e.kind) };
}

async function setStatus(id: string, status: string): Promise<void> {
  await prisma.$executeRaw`UPDATE "Notification" SET status = ${status}::"NotificationStatus" WHERE id = ${id}`;
}

describe("recordReplay (real PostgreSQL)", () => {
  it("puts a dead notification back to the status of the queue it waits in, with a REPLAYED event", async () => {
    await insertNotification(prisma, "r-dead-apply");
    await setStatus("r-dead-apply", "DEAD");
    await insertNotification(prisma, "r-failed-parse");
    await setStatus("r-failed-parse", "FAILED");
    expect(await replay("r-dead-apply")).toBe("recorded");
    expect(await replay("r-failed-parse", "notify.parse")).toBe("recorded");
    expect(await stateOf("r-dead-apply")).toEqual({ status: "PROCESSING", events: ["REPLAYED"] });
    expect(await stateOf("r-failed-parse")).toEqual({ status: "RECEIVED", events: ["REPLAYED"] });
    const [event] = await prisma.$queryRaw<{ detail: unknown }[]>`
      SELECT detail FROM "NotificationEvent" WHERE "notificationId" = 'r-dead-apply'`;
    expect(event?.detail).toEqual({
      queue: "notify.apply",
      previousCode: "DB_UNAVAILABLE",
      actor: "test",
      letterId: "apply.r-dead-apply.1",
    });
  });

  it("leaves a settled notification's status alone (the event still records the operator's replay)", async () => {
    await insertNotification(prisma, "r-applied");
    await setStatus("r-applied", "APPLIED");
    await prisma.$executeRaw`UPDATE "Notification" SET "updatedAt" = now() - interval '30 days' WHERE id = 'r-applied'`;
    expect(await replay("r-applied")).toBe("recorded");
    expect(await stateOf("r-applied")).toEqual({ status: "APPLIED", events: ["REPLAYED"] });
    // Changed now: `db:prune` keeps the row for the retention, while the replayed job, which needs it, may still run.
    const [row] = await prisma.$queryRaw<{ recent: boolean }[]>`
      SELECT "updatedAt" > (now() AT TIME ZONE 'UTC') - interval '1 hour' AS recent FROM "Notification" WHERE id = 'r-applied'`;
    expect(row?.recent).toBe(true);
  });

  it("an unknown notification: the letter's replay is recorded, no event", async () => {
    expect(await replay("r-unknown")).toBe("recorded");
    expect(await stateOf("r-unknown")).toEqual({ status: undefined, events: [] });
    // Taken over as any record: a second replay of the letter does not record it again.
    expect(await replay("r-unknown", "notify.apply", 2)).toBe("resumed");
  });

  it("a failure committed while the replay is recorded: the replay decides on the failed row, not its snapshot", async () => {
    await insertNotification(prisma, "r-race");
    // The notification's last attempt is being dead-lettered (PROCESSING → DEAD) by another transaction, which
    // commits only once recordReplay waits for the row.
    const found = await whileRowChanges(
      tdb,
      `UPDATE "Notification" SET status = 'DEAD' WHERE id = $1`,
      ["r-race"],
      () => replay("r-race"),
    );
    expect(found).toBe("recorded");
    expect(await stateOf("r-race")).toEqual({ status: "PROCESSING", events: ["REPLAYED"] });
  });
});

describe("recordReplay with rows alongside (the dashboard's AuditLog row)", () => {
  it("commits them with the record, told whether the notification exists", async () => {
    await insertNotification(prisma, "ra-dead");
    await setStatus("ra-dead", "DEAD");
    const seen: boolean[] = [];
    const audit = (target: string) => async (tx: Prisma.TransactionClient, found: boolean) => {
      seen.push(found);
      await tx.auditLog.create({ data: { actor: "test", role: "operator", action: "dead_letter.replay", target } });
    };
    const record = (notificationId: string) => ({
      letterId: letterOf(notificationId),
      fence: 1,
      notificationId,
      queue: "notify.apply",
      previousCode: "X",
    });
    expect(await recordReplay(prisma, record("ra-dead"), audit("ra-1"))).toBe("recorded");
    expect(await recordReplay(prisma, record("ra-none"), audit("ra-2"))).toBe("recorded");
    // A replay that resumes the record writes no second row.
    expect(await recordReplay(prisma, { ...record("ra-dead"), fence: 2 }, audit("ra-3"))).toBe("resumed");
    expect(seen).toEqual([true, false]);
    expect(await stateOf("ra-dead")).toEqual({ status: "PROCESSING", events: ["REPLAYED"] });
    expect(await prisma.auditLog.count({ where: { target: { in: ["ra-1", "ra-2", "ra-3"] } } })).toBe(2);
  });

  it("writes nothing when they fail: the notification keeps its status, no REPLAYED event", async () => {
    await insertNotification(prisma, "ra-fails");
    await setStatus("ra-fails", "DEAD");
    const failing = async () => {
      throw new Error("audit write failed");
    };
    const record = { letterId: letterOf("ra-fails"), fence: 1, notificationId: "ra-fails", queue: "notify.apply" };
    await expect(recordReplay(prisma, { ...record, previousCode: "X" }, failing)).rejects.toThrow("audit write failed");
    // Before: the record committed before the audit row was tried, PROCESSING with no job waiting.
    expect(await stateOf("ra-fails")).toEqual({ status: "DEAD", events: [] });
    // Nor the letter's row: the next replay records.
    expect(await recordReplay(prisma, { ...record, fence: 2, previousCode: "X" })).toBe("recorded");
  });
});

describe("recordReplayFailed (the job could not be put back)", () => {
  it("returns a replayed notification to DEAD with a REPLAY_FAILED event, unless it moved on meanwhile", async () => {
    await insertNotification(prisma, "rf-apply");
    await setStatus("rf-apply", "DEAD");
    await replay("rf-apply");
    expect(await undo("rf-apply")).toBe(true);
    expect(await stateOf("rf-apply")).toEqual({ status: "DEAD", events: ["REPLAYED", "REPLAY_FAILED"] });
    // A job of the same notification that ran meanwhile (a redelivery) settled it: that stays.
    await insertNotification(prisma, "rf-settled");
    await setStatus("rf-settled", "DEAD");
    await replay("rf-settled", "notify.parse");
    await setStatus("rf-settled", "APPLIED");
    expect(await undo("rf-settled", "notify.parse")).toBe(true);
    expect(await stateOf("rf-settled")).toEqual({ status: "APPLIED", events: ["REPLAYED", "REPLAY_FAILED"] });
    expect(await undo("rf-missing")).toBe(false);
  });
});

describe("one record per replay of a letter (fence: the replay's number for the letter, a later replay's higher)", () => {
  it("a later replay takes over a record an earlier one did not finish, writing nothing; the earlier one cannot undo it", async () => {
    await insertNotification(prisma, "rl-crash");
    await setStatus("rl-crash", "DEAD");
    expect(await replay("rl-crash", "notify.apply", 1)).toBe("recorded");
    // The first replay's process died before the add (or paused past its claim): the next replay of the letter.
    expect(await replay("rl-crash", "notify.apply", 2)).toBe("resumed");
    // The paused one wakes, and its job could not be put back (the letter is the second's now): not its to undo.
    expect(await undo("rl-crash", "notify.apply", 1)).toBe(false);
    expect(await stateOf("rl-crash")).toEqual({ status: "PROCESSING", events: ["REPLAYED"] });
  });

  it("a replay that a later one took the letter from records nothing", async () => {
    await insertNotification(prisma, "rl-stale");
    await setStatus("rl-stale", "DEAD");
    expect(await replay("rl-stale", "notify.apply", 2)).toBe("recorded");
    expect(await replay("rl-stale", "notify.apply", 1)).toBe("superseded");
    expect(await stateOf("rl-stale")).toEqual({ status: "PROCESSING", events: ["REPLAYED"] });
  });

  it("a record undone is recorded again by the next replay, and only its owner undoes it", async () => {
    await insertNotification(prisma, "rl-again");
    await setStatus("rl-again", "DEAD");
    expect(await replay("rl-again", "notify.apply", 1)).toBe("recorded");
    expect(await undo("rl-again", "notify.apply", 1)).toBe(true);
    expect(await undo("rl-again", "notify.apply", 1)).toBe(false);
    expect(await replay("rl-again", "notify.apply", 2)).toBe("recorded");
    expect(await replay("rl-again", "notify.apply", 1)).toBe("superseded");
    expect(await stateOf("rl-again")).toEqual({
      status: "PROCESSING",
      events: ["REPLAYED", "REPLAY_FAILED", "REPLAYED"],
    });
  });

  it("two replays of one letter recording at once: one event", async () => {
    await insertNotification(prisma, "rl-both");
    await setStatus("rl-both", "DEAD");
    const outcomes = await Promise.all([replay("rl-both", "notify.apply", 1), replay("rl-both", "notify.apply", 2)]);
    // Fence 1 first: 2 takes it over; fence 2 first: 1 stands down.
    expect([
      ["recorded", "resumed"],
      ["superseded", "recorded"],
    ]).toContainEqual(outcomes);
    expect(await stateOf("rl-both")).toEqual({ status: "PROCESSING", events: ["REPLAYED"] });
  });
});
