import {
  createDb,
  markNotificationDead,
  NotificationBatchError,
  type NotificationRowStatus,
  type ParsedNotification,
  type PrismaClient,
  recordReplay,
  recordReplayFailed,
  type UpsertResult,
  upsertParsedNotification,
  upsertParsedNotifications,
} from "@wpn/db";
import { createTestDatabase, type TestDatabase, waitsForLock, whileRowChanges } from "@wpn/testing";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { referenceUpsert } from "./support/upsert-reference.ts";

let test: TestDatabase;
let prisma: PrismaClient;
beforeAll(async () => {
  test = await createTestDatabase("dbnotif");
  prisma = test.db.prisma;
});
afterAll(async () => {
  await test.drop();
});

type Parsed = ParsedNotification["status"];

/** A parsed notification as the parse stage builds it: PROCESSING ⇒ PARSED, IGNORED ⇒ IGNORED, FAILED ⇒ FAILED. */
function parsed(id: string, status: Parsed = "PROCESSING", overrides: Partial<ParsedNotification> = {}) {
  const kind = status === "PROCESSING" ? "PARSED" : status;
  const detail: Record<string, unknown> =
    status === "FAILED"
      ? { stage: "notify.parse", code: "DECRYPT_FAILED", message: "tag mismatch" }
      : { stage: "notify.parse", kind: status === "IGNORED" ? "ignored" : "payment", eventType: "TRANSACTION.SUCCESS" };
  if (status === "IGNORED") detail.reason = "TRADE_STATE_NOTPAY";
  const n: ParsedNotification = {
    id,
    apiVersion: "v3",
    wechatId: null,
    otherFormId: null,
    mchid: "1900000109",
    eventType: "TRANSACTION.SUCCESS",
    receivedAt: Date.UTC(2026, 10, 30, 2, 34, 56, 789),
    headers: {
      timestamp: "1796006096",
      nonce: "n0nce",
      serial: "PUB_KEY_ID_1",
      signatureType: "WECHATPAY2-SHA256-RSA2048",
    },
    body: '{"id":"x","resource":{"ciphertext":"…"}}',
    status,
    outTradeNo: status === "FAILED" ? null : `T-${id}`,
    transactionId: status === "FAILED" ? null : `4200-${id}`,
    outRefundNo: null,
    subMchid: null,
    errorCode: status === "FAILED" ? "DECRYPT_FAILED" : null,
    lastError: status === "FAILED" ? "tag mismatch" : null,
    event: { kind, detail },
    ...overrides,
  };
  return n;
}

async function rowOf(id: string) {
  return prisma.notification.findUniqueOrThrow({ where: { id } });
}

async function eventsOf(id: string) {
  const events = await prisma.notificationEvent.findMany({ where: { notificationId: id }, orderBy: { id: "asc" } });
  return events.map((e) => ({ kind: e.kind, detail: e.detail, at: e.at }));
}

/** Sets a notification's status as a later stage would (apply, dead-lettering), with an error to keep or not. */
async function settle(id: string, status: NotificationRowStatus, errorCode: string | null = null) {
  await prisma.notification.update({ where: { id }, data: { status, errorCode, lastError: errorCode } });
}

/** Dead-letters a notification as the worker's stage `stage` does (status DEAD, a DEAD_LETTERED entry naming it). */
async function deadLetter(id: string, stage: "notify.parse" | "notify.apply", code = "DB_DATA") {
  const deadLetterId = `${stage}:${id}:1`;
  await markNotificationDead(prisma, { notificationId: id, stage, code, message: code, attempt: 1, deadLetterId });
}

/** `envelope` as an older ingress queued it (WeChat's id alone) and as a newer one does, each naming the other. */
function bothForms(envelope: string, mchid = "1900000109") {
  return {
    bare: parsed(envelope, "PROCESSING", { mchid, wechatId: envelope, otherFormId: `v3:${mchid}:${envelope}` }),
    current: parsed(`v3:${mchid}:${envelope}`, "PROCESSING", { mchid, wechatId: envelope, otherFormId: envelope }),
  };
}

/**
 * Two workers' statements at the same instant, interleaved for certain: `first` runs in a transaction held open
 * until `second` (another connection, started only then, so its snapshot never shows what `first` wrote) is seen
 * waiting for a lock — or has finished without waiting; then `first` commits. `waited` says which.
 */
async function whileUncommitted<A, B>(
  first: (tx: PrismaClient) => Promise<A>,
  second: () => Promise<B>,
): Promise<{ first: A; second: B; waited: boolean }> {
  let running: Promise<B> | undefined;
  let waited = false;
  const firstResult = await prisma.$transaction(
    async (tx) => {
      const result = await first(tx as unknown as PrismaClient);
      const started = second();
      running = started;
      waited = await waitsForLock(test, started);
      return result;
    },
    { timeout: 20_000 },
  );
  if (!running) throw new Error("the second statement never ran");
  return { first: firstResult, second: await running, waited };
}

describe("upsertParsedNotifications", () => {
  it("a batch of new, re-parsed, failed-before, settled and dead notifications: each row as the single statement would leave it, results in input order", async () => {
    const ids = ["m-zeta", "m-alpha", "m-kappa", "m-beta", "m-omega", "m-gamma", "m-delta"] as const;
    const [fresh, freshIgnored, reparsed, failedBefore, applied, review, dead] = ids;
    // Earlier history: created by a first parse, then moved on by later stages.
    await upsertParsedNotifications(prisma, [
      parsed(reparsed),
      parsed(failedBefore, "FAILED"),
      parsed(applied),
      parsed(review),
      parsed(dead),
    ]);
    await settle(applied, "APPLIED");
    await settle(review, "REVIEW", "AMOUNT_MISMATCH");
    await deadLetter(dead, "notify.apply");
    const before = await rowOf(applied);

    const results = await upsertParsedNotifications(prisma, [
      parsed(fresh),
      parsed(freshIgnored, "IGNORED"),
      // A re-parse that learnt nothing new about the keys keeps the ones on the row (COALESCE).
      parsed(reparsed, "PROCESSING", { outTradeNo: null, transactionId: null, eventType: "TRANSACTION.SUCCESS.2" }),
      parsed(failedBefore),
      parsed(applied, "PROCESSING", { outTradeNo: null, eventType: "TRANSACTION.SUCCESS.2" }),
      parsed(review, "FAILED"),
      parsed(dead),
    ]);
    expect(results).toEqual([
      { status: "PROCESSING", inserted: true },
      { status: "IGNORED", inserted: true },
      { status: "PROCESSING", inserted: false },
      { status: "PROCESSING", inserted: false },
      { status: "APPLIED", inserted: false },
      { status: "REVIEW", inserted: false },
      { status: "DEAD", inserted: false },
    ]);

    // New: RECEIVED at receivedAt with the parse detail and the API version; PARSED folded into it, IGNORED not.
    const receivedAt = new Date(parsed(fresh).receivedAt);
    expect(await eventsOf(fresh)).toEqual([
      {
        kind: "RECEIVED",
        at: receivedAt,
        detail: { apiVersion: "v3", ...parsed(fresh).event?.detail },
      },
    ]);
    expect((await eventsOf(freshIgnored)).map((e) => e.kind)).toEqual(["RECEIVED", "IGNORED"]);
    expect(await rowOf(fresh)).toMatchObject({
      status: "PROCESSING",
      outTradeNo: `T-${fresh}`,
      headers: parsed(fresh).headers,
      body: parsed(fresh).body,
      receivedAt,
    });

    expect(await rowOf(reparsed)).toMatchObject({
      status: "PROCESSING",
      eventType: "TRANSACTION.SUCCESS.2",
      outTradeNo: `T-${reparsed}`,
      transactionId: `4200-${reparsed}`,
    });
    expect((await eventsOf(reparsed)).map((e) => e.kind)).toEqual(["RECEIVED", "PARSED"]);

    expect(await rowOf(failedBefore)).toMatchObject({ status: "PROCESSING", errorCode: null, lastError: null });
    expect((await eventsOf(failedBefore)).map((e) => e.kind)).toEqual(["RECEIVED", "FAILED", "PARSED"]);

    // Settled: status, error and timeline untouched; keys only filled in, event type refreshed.
    const after = await rowOf(applied);
    expect(after).toMatchObject({
      status: "APPLIED",
      outTradeNo: before.outTradeNo,
      eventType: "TRANSACTION.SUCCESS.2",
    });
    expect((await eventsOf(applied)).map((e) => e.kind)).toEqual(["RECEIVED"]);
    expect(await rowOf(review)).toMatchObject({ status: "REVIEW", errorCode: "AMOUNT_MISMATCH" });
    expect((await eventsOf(review)).map((e) => e.kind)).toEqual(["RECEIVED"]);

    // DEAD by the apply stage: a new delivery leaves it to its letter's replay. Before fcbe379, it went PROCESSING, its
    // code gone, while the apply job added for it collapsed into the failed one (kept under its id) and never ran.
    expect(await rowOf(dead)).toMatchObject({ status: "DEAD", errorCode: "DB_DATA", lastError: "DB_DATA" });
    expect(await eventsOf(dead)).toMatchObject([
      { kind: "RECEIVED" },
      { kind: "DEAD_LETTERED" },
      { kind: "REDELIVERED", detail: parsed(dead).event?.detail },
    ]);
  });

  it("moves a DEAD row on unless its apply-stage letter is outstanding", async () => {
    const ids = ["x-parse", "x-apply", "x-apply-parse", "x-replayed", "x-replay-failed", "x-unmarked"] as const;
    const [byParse, byApply, applyThenParse, replayedThenParse, replayFailed, unmarked] = ids;
    await upsertParsedNotifications(
      prisma,
      ids.map((id) => parsed(id)),
    );
    // Dead-lettered by the parse stage (e.g. APIV2_KEY_MISSING past its window): its failed parse job is retried, or
    // the notification delivered again. No apply job holds its id.
    await deadLetter(byParse, "notify.parse", "APIV2_KEY_MISSING");
    await deadLetter(byApply, "notify.apply", "ORDER_NOT_FOUND");
    // The apply stage's failed job is still kept when a later delivery is dead-lettered at parse: a retry of that
    // parse job must not enqueue an apply job that collapses into it.
    await deadLetter(applyThenParse, "notify.apply", "ORDER_NOT_FOUND");
    await deadLetter(applyThenParse, "notify.parse", "APIV2_KEY_MISSING");
    // The apply letter was replayed (its failed job removed), then a later delivery died at parse.
    await deadLetter(replayedThenParse, "notify.apply", "ORDER_NOT_FOUND");
    await recordReplay(prisma, {
      letterId: `apply.${replayedThenParse}.1`,
      fence: 1,
      notificationId: replayedThenParse,
      queue: "notify.apply",
      previousCode: "ORDER_NOT_FOUND",
    });
    await deadLetter(replayedThenParse, "notify.parse", "APIV2_KEY_MISSING");
    // A replay whose add failed: DEAD again, but the replay had removed the failed apply job before the add.
    await deadLetter(replayFailed, "notify.apply", "ORDER_NOT_FOUND");
    const replayFailedLetter = { letterId: `apply.${replayFailed}.1`, fence: 1 };
    await recordReplay(prisma, {
      ...replayFailedLetter,
      notificationId: replayFailed,
      queue: "notify.apply",
      previousCode: "ORDER_NOT_FOUND",
    });
    await recordReplayFailed(prisma, {
      ...replayFailedLetter,
      notificationId: replayFailed,
      queue: "notify.apply",
      message: "Redis down",
    });
    // DEAD with no letter event at all (set by hand): nothing holds its apply job's id.
    await settle(unmarked, "DEAD", "E_DEAD");

    const results = await upsertParsedNotifications(
      prisma,
      ids.map((id) => parsed(id)),
    );
    expect(results.map((r) => r.status)).toEqual([
      "PROCESSING",
      "DEAD",
      "DEAD",
      "PROCESSING",
      "PROCESSING",
      "PROCESSING",
    ]);
    expect(await rowOf(byParse)).toMatchObject({ status: "PROCESSING", errorCode: null, lastError: null });
    expect((await eventsOf(byParse)).map((e) => e.kind)).toEqual(["RECEIVED", "DEAD_LETTERED", "PARSED"]);
    expect(await rowOf(byApply)).toMatchObject({ status: "DEAD", errorCode: "ORDER_NOT_FOUND" });
    expect((await eventsOf(byApply)).map((e) => e.kind)).toEqual(["RECEIVED", "DEAD_LETTERED", "REDELIVERED"]);
    expect(await rowOf(applyThenParse)).toMatchObject({ status: "DEAD", errorCode: "APIV2_KEY_MISSING" });
    expect((await eventsOf(applyThenParse)).map((e) => e.kind).at(-1)).toBe("REDELIVERED");
    expect((await eventsOf(replayedThenParse)).map((e) => e.kind).at(-1)).toBe("PARSED");
    expect((await eventsOf(replayFailed)).map((e) => e.kind).at(-1)).toBe("PARSED");
    // The single statement decides alike.
    await deadLetter(byParse, "notify.parse");
    expect(await upsertParsedNotification(prisma, parsed(byParse, "FAILED"))).toEqual({
      status: "FAILED",
      inserted: false,
    });
    expect(await upsertParsedNotification(prisma, parsed(byApply, "FAILED"))).toEqual({
      status: "DEAD",
      inserted: false,
    });
  });

  it("records the sub-merchant a partner notification names; a later parse without one (could not be opened) keeps it", async () => {
    await upsertParsedNotifications(prisma, [parsed("p-sub", "PROCESSING", { subMchid: "1900000A11" })]);
    expect(await rowOf("p-sub")).toMatchObject({ mchid: "1900000109", subMchid: "1900000A11" });
    await settle("p-sub", "REVIEW", "MCHID_MISMATCH");
    await upsertParsedNotifications(prisma, [parsed("p-sub", "FAILED", { subMchid: null })]);
    expect(await rowOf("p-sub")).toMatchObject({ status: "REVIEW", subMchid: "1900000A11" });
  });

  it("records WeChat's id of an APIv3 notification; a later parse without one keeps it", async () => {
    const id = "v3:1900000109:EV-2018022511223320873";
    await upsertParsedNotifications(prisma, [parsed(id, "FAILED", { wechatId: "EV-2018022511223320873" })]);
    expect(await rowOf(id)).toMatchObject({ wechatId: "EV-2018022511223320873" });
    await upsertParsedNotifications(prisma, [parsed(id, "PROCESSING", { wechatId: null })]);
    expect(await rowOf(id)).toMatchObject({ status: "PROCESSING", wechatId: "EV-2018022511223320873" });
  });

  it("both id forms in one batch: the first in the batch is applied, the other is recorded DUPLICATE of it", async () => {
    const oldFirst = bothForms("EV-b-old-first");
    const newFirst = bothForms("EV-b-new-first");
    // An earlier row of the batch moves on from FAILED (its job retried): a later new form is a resend of it.
    const retried = bothForms("EV-b-retried");
    await upsertParsedNotifications(prisma, [{ ...retried.bare, status: "FAILED", event: null }]);
    // One that could not be opened (FAILED) holds nothing back.
    const failed = bothForms("EV-b-failed");
    const results = await upsertParsedNotifications(prisma, [
      oldFirst.bare,
      newFirst.current,
      retried.bare,
      { ...failed.bare, status: "FAILED", event: null },
      failed.current,
      oldFirst.current,
      newFirst.bare,
      retried.current,
    ]);
    expect(results).toEqual([
      { status: "PROCESSING", inserted: true },
      { status: "PROCESSING", inserted: true },
      { status: "PROCESSING", inserted: false },
      { status: "FAILED", inserted: true },
      { status: "PROCESSING", inserted: true },
      { status: "DUPLICATE", inserted: true, duplicateOf: oldFirst.bare.id },
      { status: "DUPLICATE", inserted: true, duplicateOf: newFirst.current.id },
      { status: "DUPLICATE", inserted: true, duplicateOf: retried.bare.id },
    ]);
    expect(await eventsOf(newFirst.bare.id)).toMatchObject([
      { kind: "RECEIVED" },
      { kind: "DUPLICATE", detail: { duplicateOf: newFirst.current.id } },
    ]);
  });

  it("a re-run of a parse whose row another run created DUPLICATE meanwhile adds no entry and is told it is a resend", async () => {
    const { bare, current } = bothForms("EV-race-rerun");
    await upsertParsedNotifications(prisma, [bare]);
    await settle(bare.id, "APPLIED");
    // Two runs of the resend's job at once (a stalled job re-run): the second statement's snapshot has no row; it
    // waits for the first (the notification's lock, then its insert) and then finds the row DUPLICATE.
    const race = await whileUncommitted(
      (tx) => upsertParsedNotifications(tx, [current]),
      () => upsertParsedNotifications(prisma, [current]),
    );
    expect(race.first).toEqual([{ status: "DUPLICATE", inserted: true, duplicateOf: bare.id }]);
    expect(race.waited).toBe(true);
    expect(race.second).toEqual([{ status: "DUPLICATE", inserted: false, duplicateOf: bare.id }]);
    expect((await eventsOf(current.id)).map((e) => e.kind)).toEqual(["RECEIVED", "DUPLICATE"]);
  });

  for (const order of ["old id first", "new id first"] as const) {
    it(`both id forms parsed at the same instant by two workers (${order}): the second waits for the first and is recorded DUPLICATE of it`, async () => {
      const { bare, current } = bothForms(`EV-race-${order.split(" ")[0]}`);
      const [first, second] = order === "old id first" ? [bare, current] : [current, bare];
      // Each statement's snapshot is taken before the other committed: without a lock, neither saw the other's row
      // and both were created PROCESSING (both applied).
      const race = await whileUncommitted(
        (tx) => upsertParsedNotifications(tx, [first]),
        () => upsertParsedNotifications(prisma, [second]),
      );
      expect(race.first).toEqual([{ status: "PROCESSING", inserted: true }]);
      expect(race.second).toEqual([{ status: "DUPLICATE", inserted: true, duplicateOf: first.id }]);
      expect(race.waited).toBe(true);
      expect(await rowOf(first.id)).toMatchObject({ status: "PROCESSING" });
      expect(await rowOf(second.id)).toMatchObject({ status: "DUPLICATE" });
      expect(await eventsOf(second.id)).toMatchObject([
        { kind: "RECEIVED" },
        { kind: "DUPLICATE", detail: { duplicateOf: first.id } },
      ]);
    });
  }

  it("the lock is the notification's: another notification, or another merchant's with the same WeChat id, does not wait", async () => {
    const { bare } = bothForms("EV-race-own");
    const other = bothForms("EV-race-other").current;
    const tenant = bothForms("EV-race-own", "1900000222").current;
    const race = await whileUncommitted(
      (tx) => upsertParsedNotifications(tx, [bare]),
      () => upsertParsedNotifications(prisma, [other, tenant]),
    );
    expect(race.waited).toBe(false);
    expect(race.second).toEqual([
      { status: "PROCESSING", inserted: true },
      { status: "PROCESSING", inserted: true },
    ]);
  });

  it("batches holding both forms of many notifications in opposite orders, at once: each applied once, no deadlock", async () => {
    const envelopes = Array.from({ length: 30 }, (_, i) => `EV-many-${String(i).padStart(2, "0")}`);
    for (let round = 0; round < 5; round++) {
      const pairs = envelopes.map((e) => bothForms(`${e}-${round}`));
      const [olds, news] = await Promise.all([
        upsertParsedNotifications(
          prisma,
          pairs.map((p) => p.bare),
        ),
        upsertParsedNotifications(
          prisma,
          [...pairs].reverse().map((p) => p.current),
        ),
      ]);
      const currents = [...news].reverse();
      olds.forEach((old, i) => {
        expect([old.status, currents[i]?.status].sort()).toEqual(["DUPLICATE", "PROCESSING"]);
      });
    }
  });

  it("a new row whose other id form is the same merchant's notification, settled or on its way, is recorded DUPLICATE of it", async () => {
    const B = "1900000222";
    // Old id first, put in review (e.g. DUPLICATE_PAYMENT); new id first, applied; a bare row still on its way.
    const review = bothForms("EV-t-review");
    const applied = bothForms("EV-t-applied");
    const onItsWay = bothForms("EV-t-processing");
    await upsertParsedNotifications(prisma, [review.bare, applied.current, onItsWay.bare]);
    await settle(review.bare.id, "REVIEW", "DUPLICATE_PAYMENT");
    await settle(applied.current.id, "APPLIED");
    // Not held back: another merchant's notification with the same WeChat id (a tenant's copy), a bare row whose own
    // job failed or was dead-lettered, one asked IGNORED, an APIv2 one.
    const tenant = bothForms("EV-t-review", B).current;
    const failed = bothForms("EV-t-failed");
    const dead = bothForms("EV-t-dead");
    const ignored = bothForms("EV-t-ignored");
    const v2 = bothForms("EV-t-v2");
    await upsertParsedNotifications(prisma, [failed.bare, dead.bare, ignored.bare, { ...v2.bare, apiVersion: "v2" }]);
    await settle(failed.bare.id, "FAILED", "DB_UNAVAILABLE");
    await deadLetter(dead.bare.id, "notify.apply", "ORDER_NOT_FOUND");
    await settle(ignored.bare.id, "APPLIED");

    const results = await upsertParsedNotifications(prisma, [
      review.current,
      applied.bare,
      onItsWay.current,
      tenant,
      failed.current,
      dead.current,
      { ...ignored.current, status: "IGNORED", event: { kind: "IGNORED", detail: {} } },
      { ...v2.current, apiVersion: "v2" },
    ]);
    expect(results).toEqual([
      { status: "DUPLICATE", inserted: true, duplicateOf: review.bare.id },
      { status: "DUPLICATE", inserted: true, duplicateOf: applied.current.id },
      { status: "DUPLICATE", inserted: true, duplicateOf: onItsWay.bare.id },
      { status: "PROCESSING", inserted: true },
      { status: "PROCESSING", inserted: true },
      { status: "PROCESSING", inserted: true },
      { status: "IGNORED", inserted: true },
      { status: "PROCESSING", inserted: true },
    ]);
    expect(await rowOf(review.current.id)).toMatchObject({
      status: "DUPLICATE",
      errorCode: null,
      wechatId: "EV-t-review",
    });
    expect(await rowOf(review.bare.id)).toMatchObject({ status: "REVIEW", errorCode: "DUPLICATE_PAYMENT" });
    expect(await eventsOf(review.current.id)).toMatchObject([
      { kind: "RECEIVED", detail: { apiVersion: "v3", ...review.current.event?.detail } },
      { kind: "DUPLICATE", detail: { ...review.current.event?.detail, duplicateOf: review.bare.id } },
    ]);
    // The row the resend duplicates is left as it was.
    expect((await eventsOf(review.bare.id)).map((e) => e.kind)).toEqual(["RECEIVED"]);
    expect(await rowOf(onItsWay.bare.id)).toMatchObject({ status: "PROCESSING" });

    // A later parse of the DUPLICATE row (its job re-run) finds it settled, like any other, and is told which row it
    // is a resend of; no entry is added.
    expect(await upsertParsedNotifications(prisma, [review.current])).toEqual([
      { status: "DUPLICATE", inserted: false, duplicateOf: review.bare.id },
    ]);
    expect((await eventsOf(review.current.id)).map((e) => e.kind)).toEqual(["RECEIVED", "DUPLICATE"]);
    // The single statement decides alike.
    const single = bothForms("EV-t-single");
    await upsertParsedNotification(prisma, single.bare);
    expect(await upsertParsedNotification(prisma, single.current)).toEqual({
      status: "DUPLICATE",
      inserted: true,
      duplicateOf: single.bare.id,
    });
  });

  it("the single upsert is the batch of one", async () => {
    expect(await upsertParsedNotification(prisma, parsed("s-one", "IGNORED"))).toEqual({
      status: "IGNORED",
      inserted: true,
    });
    expect(await upsertParsedNotification(prisma, parsed("s-one"))).toEqual({ status: "IGNORED", inserted: false });
    expect((await eventsOf("s-one")).map((e) => e.kind)).toEqual(["RECEIVED", "IGNORED"]);
  });

  it("refuses a batch that names an id twice, before sending anything", async () => {
    const error = await upsertParsedNotifications(prisma, [
      parsed("d-1"),
      parsed("d-2"),
      parsed("d-1", "IGNORED"),
    ]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NotificationBatchError);
    expect(error).toMatchObject({ code: "BATCH_DUPLICATE_ID" });
    expect(await prisma.notification.count({ where: { id: { in: ["d-1", "d-2"] } } })).toBe(0);
  });

  it("answers an empty batch without a round trip", async () => {
    const unusable = {} as PrismaClient;
    expect(await upsertParsedNotifications(unusable, [])).toEqual([]);
  });

  it("stores a lone surrogate as U+FFFD, as the parameter of the single statement did", async () => {
    const lone = `T-\ud800-x-\udc00`;
    await upsertParsedNotifications(prisma, [parsed("u-batch", "PROCESSING", { outTradeNo: lone })]);
    await referenceUpsert(prisma, parsed("u-ref", "PROCESSING", { outTradeNo: lone }));
    expect((await rowOf("u-batch")).outTradeNo).toBe("T-\ufffd-x-\ufffd");
    expect((await rowOf("u-batch")).outTradeNo).toBe((await rowOf("u-ref")).outTradeNo);
  });

  it("is one prepared statement whatever the batch size", async () => {
    const db = createDb({ url: test.url, poolMax: 1, preparedStatements: true });
    try {
      for (const size of [1, 3, 17]) {
        const rows = Array.from({ length: size }, (_, i) => parsed(`p-${size}-${i}`));
        expect(await upsertParsedNotifications(db.prisma, rows)).toHaveLength(size);
      }
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement LIKE '%json_to_recordset%'`,
      );
      expect(rows[0]?.n).toBe(1);
    } finally {
      await db.close();
    }
  });

  it("two batches over the same ids in opposite orders never deadlock (rows are locked in id order)", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `l-${String(i).padStart(2, "0")}`);
    for (let round = 0; round < 10; round++) {
      const forward = ids.map((id) => parsed(id));
      const backward = [...ids].reverse().map((id) => parsed(id, "PROCESSING", { outTradeNo: null }));
      const [a, b] = await Promise.all([
        upsertParsedNotifications(prisma, forward),
        upsertParsedNotifications(prisma, backward),
      ]);
      expect(a.map((r) => r.status)).toEqual(ids.map(() => "PROCESSING"));
      expect(b).toHaveLength(ids.length);
    }
  });
});

// ------------------------------------------------------------------ batch == single, on random histories

const STATUSES = ["RECEIVED", "PROCESSING", "APPLIED", "DUPLICATE", "REVIEW", "IGNORED", "FAILED", "DEAD"] as const;
/**
 * Keys 0–5 are 3 notifications (key % 3), each under either id form: keys 0–2 WeChat's id alone (an older ingress's),
 * 3–5 `v3:<mchid>:<id>` — so a round, or a later one, may record the resend of a notification under its other form.
 * One round names an id once (one statement cannot upsert a row twice); the single statements run in the batch's order.
 */
const KEYS = 6;
const NOTIFICATIONS = 3;
const LETTER_EVENTS = [
  { kind: "DEAD_LETTERED", detail: { stage: "notify.apply" } },
  { kind: "DEAD_LETTERED", detail: { stage: "notify.parse" } },
  { kind: "REPLAYED", detail: { queue: "notify.apply" } },
  { kind: "REPLAYED", detail: { queue: "notify.parse" } },
] as const;

const entry = fc.record({
  key: fc.integer({ min: 0, max: KEYS - 1 }),
  status: fc.constantFrom<Parsed>("PROCESSING", "IGNORED", "FAILED"),
  // Mostly APIv3, whose resends may straddle the id forms.
  apiVersion: fc.oneof(
    { arbitrary: fc.constant("v3" as const), weight: 3 },
    { arbitrary: fc.constant("v2" as const), weight: 1 },
  ),
  outTradeNo: fc.option(fc.constantFrom("A", "B"), { nil: null }),
  transactionId: fc.option(fc.constantFrom("X1", "X2"), { nil: null }),
  outRefundNo: fc.option(fc.constantFrom("R1", "R2"), { nil: null }),
  subMchid: fc.option(fc.constantFrom("1900000A11", "1900000B22"), { nil: null }),
  wechatId: fc.option(fc.constantFrom("EV-1", "EV-2"), { nil: null }),
  eventType: fc.constantFrom("TRANSACTION.SUCCESS", "REFUND.SUCCESS"),
  withHeaders: fc.boolean(),
  // A failed attempt whose entry the caller writes itself (the parse stage, for a key retried within the window).
  withEvent: fc.boolean(),
  receivedAt: fc.integer({ min: 1_700_000_000_000, max: 1_800_000_000_000 }),
  // The verifying merchant: a resend is the notification recorded before only when it is the same merchant's.
  mchid: fc.oneof(
    { arbitrary: fc.constant("1900000109"), weight: 3 },
    { arbitrary: fc.constant("1900000222"), weight: 1 },
  ),
});
const round = fc.record({
  // Distinct keys are distinct ids: a round may hold both forms of a notification (one parse batch meeting both).
  upserts: fc.uniqueArray(entry, { selector: (e) => e.key, minLength: 1, maxLength: KEYS }),
  settles: fc.array(
    fc.record({
      key: fc.integer({ min: 0, max: KEYS - 1 }),
      // DEAD half the time: the status whose handling depends on the history.
      status: fc.oneof(fc.constantFrom(...STATUSES), fc.constant("DEAD" as const)),
      // The letter events that decide whether a DEAD row is moved on, as the worker and the replay write them, in order.
      letters: fc.array(fc.constantFrom(...LETTER_EVENTS), { maxLength: 3 }),
    }),
    { maxLength: 3 },
  ),
});

type Entry = typeof entry extends fc.Arbitrary<infer T> ? T : never;

/** The notification id of `key` under `prefix`, and the id of its other form. */
function idsOf(prefix: string, key: number, mchid: string): { id: string; otherFormId: string } {
  const wechatId = `${prefix}${key % NOTIFICATIONS}`;
  const current = `v3:${mchid}:${wechatId}`;
  return key < NOTIFICATIONS ? { id: wechatId, otherFormId: current } : { id: current, otherFormId: wechatId };
}

function fromEntry(prefix: string, e: Entry): ParsedNotification {
  const { id, otherFormId } = idsOf(prefix, e.key, e.mchid);
  return parsed(id, e.status, {
    apiVersion: e.apiVersion,
    otherFormId: e.apiVersion === "v3" ? otherFormId : null,
    mchid: e.mchid,
    headers: e.withHeaders ? { serial: "S" } : null,
    eventType: e.eventType,
    outTradeNo: e.outTradeNo,
    transactionId: e.transactionId,
    outRefundNo: e.outRefundNo,
    subMchid: e.subMchid,
    wechatId: e.wechatId,
    receivedAt: e.receivedAt,
    ...(e.withEvent || e.status !== "FAILED" ? {} : { event: null }),
  });
}

/** The ids of every form of the notifications under `prefix`. */
function idsUnder(prefix: string) {
  return { OR: [{ startsWith: prefix }, { contains: `:${prefix}` }] };
}

/** Everything the statements write about the notifications under `prefix`, with the prefix removed and clock values reduced to what is deterministic. */
async function snapshot(prefix: string) {
  const rows = await prisma.notification.findMany({
    where: { OR: idsUnder(prefix).OR.map((id) => ({ id })) },
    orderBy: { id: "asc" },
  });
  const events = await prisma.notificationEvent.findMany({
    where: { OR: idsUnder(prefix).OR.map((notificationId) => ({ notificationId })) },
    orderBy: [{ notificationId: "asc" }, { id: "asc" }],
  });
  const unprefixed = (text: string) => text.replaceAll(prefix, "");
  return {
    rows: rows.map(({ id, createdAt: _c, updatedAt: _u, ...rest }) => ({ ...rest, id: unprefixed(id) })),
    events: events.map((e) => {
      const row = rows.find((r) => r.id === e.notificationId);
      return {
        id: unprefixed(e.notificationId),
        kind: e.kind,
        detail: JSON.parse(unprefixed(JSON.stringify(e.detail))),
        atReceivedAt: e.at.getTime() === row?.receivedAt.getTime(),
      };
    }),
  };
}

describe("a failed attempt the caller records itself (event null)", () => {
  it("creates the row FAILED with only its RECEIVED entry, and adds no entry when repeated", async () => {
    const id = "m-key-window";
    const failed = parsed(id, "FAILED", { event: null });
    expect(await upsertParsedNotifications(prisma, [failed])).toEqual([{ status: "FAILED", inserted: true }]);
    expect(await upsertParsedNotifications(prisma, [failed])).toEqual([{ status: "FAILED", inserted: false }]);
    expect(await rowOf(id)).toMatchObject({ status: "FAILED", errorCode: "DECRYPT_FAILED" });
    expect(await eventsOf(id)).toEqual([
      { kind: "RECEIVED", at: new Date(failed.receivedAt), detail: { apiVersion: "v3" } },
    ]);
  });
});

describe("markNotificationDead", () => {
  const mark = (id: string, code = "QUEUE_UNAVAILABLE") =>
    markNotificationDead(prisma, {
      notificationId: id,
      stage: "notify.apply",
      code,
      message: `${code}: Redis refused`,
      attempt: 20,
      deadLetterId: `apply.${id}.1`,
    });
  const entry = (id: string, code = "QUEUE_UNAVAILABLE") => ({
    kind: "DEAD_LETTERED",
    detail: {
      stage: "notify.apply",
      code,
      message: `${code}: Redis refused`,
      attempt: 20,
      deadLetterId: `apply.${id}.1`,
    },
  });
  /** Moves the row's last change a month back, so that a statement moving it shows. */
  const monthOld = (id: string) =>
    prisma.$executeRaw`UPDATE "Notification" SET "updatedAt" = "updatedAt" - interval '30 days' WHERE id = ${id}`;

  it("marks a notification DEAD with the code, one attempt more and a DEAD_LETTERED entry naming the letter", async () => {
    const id = "k-processing";
    await upsertParsedNotification(prisma, parsed(id));
    expect(await mark(id)).toBe(true);
    expect(await rowOf(id)).toMatchObject({ status: "DEAD", attempts: 1, errorCode: "QUEUE_UNAVAILABLE" });
    expect((await eventsOf(id)).at(-1)).toMatchObject(entry(id));
  });

  it("a settled notification keeps its status and error, and gets the DEAD_LETTERED entry: its letter may owe an event", async () => {
    for (const status of ["APPLIED", "DUPLICATE", "REVIEW", "IGNORED"] as const) {
      const id = `k-${status.toLowerCase()}`;
      await upsertParsedNotification(prisma, parsed(id));
      await settle(id, status, status === "REVIEW" ? "AMOUNT_MISMATCH" : null);
      await monthOld(id);
      const before = await rowOf(id);

      expect(await mark(id), status).toBe(false);

      const after = await rowOf(id);
      expect(after, status).toMatchObject({ status, attempts: before.attempts, errorCode: before.errorCode });
      // Before: no entry, so nothing told `db:prune` (nor the dashboard) that a letter waits for this row.
      expect((await eventsOf(id)).at(-1), status).toMatchObject(entry(id));
      // A prune that read the row before the entry committed sees it changed and keeps it (packages/db/src/prune.ts).
      expect(after.updatedAt.getTime(), status).toBeGreaterThan(before.updatedAt.getTime());
    }
  });

  it("a notification a concurrent run of its job settles meanwhile: kept settled, the entry still written", async () => {
    const id = "k-race";
    await upsertParsedNotification(prisma, parsed(id));
    const dead = await whileRowChanges(test, `UPDATE "Notification" SET status = 'APPLIED' WHERE id = $1`, [id], () =>
      mark(id),
    );
    expect(dead).toBe(false);
    expect(await rowOf(id)).toMatchObject({ status: "APPLIED", attempts: 0, errorCode: null });
    expect((await eventsOf(id)).at(-1)).toMatchObject(entry(id));
  });

  it("answers false for an unknown notification and writes nothing", async () => {
    expect(await mark("k-unknown")).toBe(false);
    expect(await eventsOf("k-unknown")).toEqual([]);
  });
});

describe("upsertParsedNotifications == upsertParsedNotification before batching", () => {
  let run = 0;
  it("leaves the same rows and timeline and answers the same results over random histories", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(round, { minLength: 1, maxLength: 4 }), async (rounds) => {
        run += 1;
        const ref = `r${run}-`;
        const bat = `b${run}-`;
        for (const { upserts, settles } of rounds) {
          const expected = [];
          for (const e of upserts) expected.push(await referenceUpsert(prisma, fromEntry(ref, e)));
          const actual = await upsertParsedNotifications(
            prisma,
            upserts.map((e) => fromEntry(bat, e)),
          );
          // `duplicateOf` names a row under the run's own prefix.
          const unprefixed = (results: UpsertResult[], prefix: string) =>
            results.map((r) =>
              r.duplicateOf === undefined ? r : { ...r, duplicateOf: r.duplicateOf.replace(prefix, "") },
            );
          expect(unprefixed(actual, bat)).toEqual(unprefixed(expected, ref));
          for (const s of settles) {
            // Every form of the key's notification, both merchants'.
            const ids = [
              ...new Set(
                [ref, bat].flatMap((prefix) =>
                  ["1900000109", "1900000222"].map((mchid) => idsOf(prefix, s.key, mchid).id),
                ),
              ),
            ];
            await prisma.notification.updateMany({
              where: { id: { in: ids } },
              data: { status: s.status, errorCode: `E_${s.status}` },
            });
            for (const letter of s.letters) {
              for (const id of ids) {
                // Only for a notification that exists (createMany would fail on the foreign key).
                await prisma.$executeRaw`
                  INSERT INTO "NotificationEvent" ("notificationId", kind, detail)
                  SELECT id, ${letter.kind}, ${JSON.stringify(letter.detail)}::jsonb FROM "Notification" WHERE id = ${id}`;
              }
            }
          }
        }
        expect(await snapshot(bat)).toEqual(await snapshot(ref));
      }),
      { numRuns: 40 },
    );
  });
});
