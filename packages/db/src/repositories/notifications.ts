import type { PrismaClient } from "../generated/client.ts";
import { jsonParam } from "./json-param.ts";

/**
 * Notification bookkeeping for the worker: each function is one SQL statement (one round trip, atomic),
 * safe to run again for the same notification. A notification whose effects are settled — APPLIED,
 * DUPLICATE, REVIEW or IGNORED — is never moved back by a late or repeated job (a stalled job re-run by a
 * second worker, a replay): those statuses are final.
 */
export const FINAL_NOTIFICATION_STATUSES = ["APPLIED", "DUPLICATE", "REVIEW", "IGNORED"] as const;

export type NotificationRowStatus =
  | "RECEIVED"
  | "PROCESSING"
  | "APPLIED"
  | "DUPLICATE"
  | "REVIEW"
  | "IGNORED"
  | "FAILED"
  | "DEAD";

export interface ParsedNotification {
  /** The notification id (@wpn/queue jobs/ids.ts), also its jobs' id. */
  id: string;
  apiVersion: "v3" | "v2";
  /**
   * APIv3: WeChat's notification id (the envelope id), for the dashboard's search; null for APIv2. A null keeps what
   * an earlier parse recorded.
   */
  wechatId: string | null;
  /**
   * APIv3: the id the same notification has in the other form — `<envelope id>` (an ingress from before the
   * `v3:<mchid>:<envelope id>` ids) for a `v3:` id and the reverse (@wpn/queue jobs/ids.ts) —, where a resend straddling
   * a deploy is recorded first; null for APIv2. See `upsertParsedNotification`.
   */
  otherFormId: string | null;
  mchid: string | null;
  eventType: string;
  /** ms since the epoch. */
  receivedAt: number;
  /** Verified headers worth keeping (never key material); null for APIv2. */
  headers: Record<string, string> | null;
  /** The raw body, verbatim (the encrypted parts stay encrypted). */
  body: string;
  /** PROCESSING (an apply job follows), IGNORED (nothing to apply) or FAILED (could not be opened). */
  status: "PROCESSING" | "IGNORED" | "FAILED";
  outTradeNo: string | null;
  transactionId: string | null;
  outRefundNo: string | null;
  /**
   * Partner (服务商) mode: the sub-merchant the notification names (`mchid` is the service provider's); null for a
   * direct merchant or a notification that could not be opened. Like the business keys, a null keeps what an
   * earlier parse recorded.
   */
  subMchid: string | null;
  errorCode: string | null;
  lastError: string | null;
  /**
   * Timeline entry of this parse (PARSED, IGNORED, FAILED) and its detail. The first time, PARSED is folded
   * into the RECEIVED entry (one row less per notification on the hot path); a re-parse of a notification
   * not yet settled (redelivery, replay) writes it as its own entry — as REDELIVERED when the row stays DEAD
   * (see `upsertParsedNotification`). Null: none (only RECEIVED, the first time) — for an attempt whose failure the
   * caller records itself.
   */
  event: { kind: string; detail: Record<string, unknown> } | null;
}

export interface UpsertResult {
  /**
   * Status after the statement: a final status, or DEAD left to its apply-stage letter (`upsertParsedNotification`),
   * is kept, whatever was asked.
   */
  status: NotificationRowStatus;
  /** True when this call created the row (first time the notification reached a worker). */
  inserted: boolean;
  /**
   * Set when the row is DUPLICATE as a resend of the notification recorded under `otherFormId` (that row's id): created
   * so by this call (`inserted`), or found so — a re-run of its parse job — by the row's DUPLICATE entry or, when
   * another run created it since this statement's snapshot, by the twin check this call made. Nothing to apply. Absent
   * otherwise (a row the apply stage made DUPLICATE, a second notification of one transaction, included).
   */
  duplicateOf?: string;
}

/** Thrown by `upsertParsedNotifications` for a batch it must not run; `code` is stable. */
export class NotificationBatchError extends Error {
  override readonly name = "NotificationBatchError";
  constructor(
    /** BATCH_DUPLICATE_ID: an id appears twice in one batch. BATCH_RESULT_MISMATCH: the statement's rows do not match the batch. */
    readonly code: "BATCH_DUPLICATE_ID" | "BATCH_RESULT_MISMATCH",
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/**
 * Creates or refreshes the Notification row of a parsed notification and appends its timeline: RECEIVED
 * (at `receivedAt`, with the parse detail) the first time, then the parse event unless it is PARSED on that
 * first time or the row was already final.
 *
 * A DEAD row whose apply stage dead-lettered it (its latest apply-stage letter event — DEAD_LETTERED with `stage`
 * notify.apply, or REPLAYED with `queue` notify.apply — is a DEAD_LETTERED) stays DEAD, with its code, and the entry
 * is REDELIVERED (with the parse detail): the failed apply job is kept 7 days under the notification's id, so an apply
 * job enqueued for it would be collapsed into it and never run while the row said one was on its way; its letter waits
 * in `notify.dead`, and the replay of that letter (which removes the failed job first) applies it. Any other DEAD row —
 * dead-lettered by the parse stage (a key missing past its window), met by a retry of that failed parse job or by a
 * new delivery — moves on like a FAILED one: no apply job holds its id, so the one enqueued runs. A row DEAD now but
 * not in the statement's snapshot (dead-lettered meanwhile, its event not visible) is kept DEAD: its letter recovers it.
 *
 * A resend straddling a deploy: WeChat resends a notification it was not answered for, and an ingress from before
 * the `v3:<mchid>:<envelope id>` ids queued it under the envelope id alone while a newer one queues the resend under
 * the new id (or the reverse, an ingress rolled back). The two ids are one notification: when a row asked PROCESSING
 * is new and the row under its `otherFormId` is of the same merchant (`mchid`: the one whose keys verified it, so
 * another tenant's copy of the id is never taken for it), APIv3, and settled (APPLIED, DUPLICATE, REVIEW, IGNORED)
 * or PROCESSING (its apply job on its way), the row is created DUPLICATE — no apply job — with a DUPLICATE entry
 * naming that row (`duplicateOf`), and the result says `duplicateOf`. Applied as a second notification, PostgreSQL
 * applied a payment or refund once, but a review verdict the order does not absorb (DUPLICATE_PAYMENT,
 * TRANSACTION_CONFLICT, REFUND_ID_CONFLICT, REFUND_CONFLICT) was reached again: a second REVIEW row and review event.
 * Any other status of that row (RECEIVED, FAILED, DEAD: its own job failed or waits for a replay) does not hold this
 * one back: applied as a second notification. One primary-key read per new APIv3 row asked PROCESSING, made once the
 * statement holds that notification's lock (a transaction-scoped advisory lock keyed on its pair of ids, i.e. on
 * merchant and envelope id: `wpn_notification_twins`, migration 20261204100000), with a snapshot taken then: both
 * copies parsed at the same instant by two workers are judged one after the other — the second waits until the first
 * committed and sees its row — where the statement's own snapshot showed neither the other (both were applied). The
 * lock ends with the statement's transaction; unrelated notifications never wait for each other. Both forms in one
 * batch are judged as if upserted one after another in the batch's order: the later one's twin is the earlier as its
 * own upsert leaves it (see `upsertParsedNotifications`).
 *
 * No entry is added for a row that ends in a final status other than the one asked: it had it (settled, or created
 * DUPLICATE, by a concurrent run since the snapshot — a stalled job re-run). One such case is not told apart: a row a
 * concurrent run made IGNORED, asked IGNORED again, gets a second IGNORED entry.
 *
 * The batch of one of `upsertParsedNotifications` (one statement text for both, so one prepared statement).
 */
export async function upsertParsedNotification(prisma: PrismaClient, n: ParsedNotification): Promise<UpsertResult> {
  const [row] = await upsertParsedNotifications(prisma, [n]);
  // upsertParsedNotifications answers one result per input row or throws: this cannot be undefined.
  if (!row) throw new NotificationBatchError("BATCH_RESULT_MISMATCH", `upsert of notification ${n.id} returned no row`);
  return row;
}

/**
 * `upsertParsedNotification` for many notifications in ONE statement (one round trip, one transaction), with
 * exactly its semantics row by row; results are in input order. The ids must be distinct (a statement's
 * ON CONFLICT DO UPDATE cannot touch a row twice): a repeated id throws BATCH_DUPLICATE_ID before anything
 * is sent. An empty batch answers [] without a round trip.
 *
 * Rows see each other as if upserted one after another in input order, which is what the twin check needs: a
 * notification whose two id forms are both in the batch (one worker's group commit met both copies) is applied under
 * the one earlier in the batch, and the later is created DUPLICATE of it — read from the snapshot only, both were
 * created PROCESSING and applied twice. The earlier one is taken as its upsert leaves it (a new row as asked: its own
 * twin could only be the later one), which holds as each form names the other (`otherFormId`, parse.processor.ts).
 *
 * The batch travels as one json parameter, so the SQL text does not depend on the batch size (one prepared
 * statement for every size). Rows are inserted in id order, so two batches sharing ids (a stalled job re-run
 * by another process while the first still runs) lock them in the same order and cannot deadlock; the notification
 * locks of the twin check are all taken before any row, in key order, so they cannot either.
 * The settled check reads the row as of the statement's snapshot, like the single statement always did.
 */
export async function upsertParsedNotifications(
  prisma: PrismaClient,
  batch: readonly ParsedNotification[],
): Promise<UpsertResult[]> {
  if (batch.length === 0) return [];
  const seen = new Set<string>();
  for (const n of batch) {
    if (seen.has(n.id)) throw new NotificationBatchError("BATCH_DUPLICATE_ID", `notification ${n.id} appears twice`);
    seen.add(n.id);
  }
  const records = batch.map((n) => ({
    id: n.id,
    apiVersion: n.apiVersion,
    wechatId: n.wechatId,
    otherFormId: n.otherFormId,
    mchid: n.mchid,
    eventType: n.eventType,
    receivedAt: n.receivedAt,
    headers: n.headers,
    body: n.body,
    status: n.status,
    outTradeNo: n.outTradeNo,
    transactionId: n.transactionId,
    outRefundNo: n.outRefundNo,
    subMchid: n.subMchid,
    errorCode: n.errorCode,
    lastError: n.lastError,
    kind: n.event?.kind ?? null,
    detail: n.event?.detail ?? {},
  }));
  const input = jsonParam(records);
  const rows = await prisma.$queryRaw<
    { id: string; status: NotificationRowStatus; inserted: boolean; duplicateOf: string | null }[]
  >`
    WITH input AS (
      SELECT r.ordinality AS ord, r.id, r."apiVersion", r."wechatId", r."otherFormId", r.mchid, r."eventType",
             (to_timestamp(r."receivedAt" / 1000.0) AT TIME ZONE 'UTC')::timestamp(3) AS received_at,
             (now() AT TIME ZONE 'UTC')::timestamp(3) AS at,
             r.headers, r.body, r.status::"NotificationStatus" AS status, r."outTradeNo", r."transactionId",
             r."outRefundNo", r."subMchid", r."errorCode", r."lastError", r.kind, r.detail
      FROM ROWS FROM (json_to_recordset(${input}::json) AS (
        id text, "apiVersion" text, "wechatId" text, "otherFormId" text, mchid text, "eventType" text, "receivedAt" bigint, headers jsonb, body text,
        status text, "outTradeNo" text, "transactionId" text, "outRefundNo" text, "subMchid" text,
        "errorCode" text, "lastError" text, kind text, detail jsonb
      )) WITH ORDINALITY AS r
    ),
    prior AS (
      SELECT n.id, n.status::text AS status, n."apiVersion", n.mchid FROM "Notification" n
      WHERE n.id IN (SELECT id FROM input)
    ),
    -- DEAD rows the parse moves on: no apply-stage letter outstanding (see upsertParsedNotification). One read of the
    -- row's few events by the ("notificationId", at) index, for DEAD rows only; 'notify.apply' is QueueName.Apply.
    reopened AS (
      SELECT p.id FROM prior p
      WHERE p.status = 'DEAD' AND COALESCE((
        SELECT e.kind FROM "NotificationEvent" e
        WHERE e."notificationId" = p.id
          AND ((e.kind = 'DEAD_LETTERED' AND e.detail->>'stage' = 'notify.apply')
            OR (e.kind = 'REPLAYED' AND e.detail->>'queue' = 'notify.apply'))
        ORDER BY e.id DESC LIMIT 1
      ), '') <> 'DEAD_LETTERED'
    ),
    -- Each row of the batch as its own upsert leaves it (apiVersion and mchid are never updated; the status as in
    -- \`up\`, a new row's as asked: its twin could only be a later row of the batch), for the twin check of later rows.
    planned AS (
      SELECT i.ord, i.id,
             CASE WHEN p.id IS NULL THEN i."apiVersion" ELSE p."apiVersion" END AS "apiVersion",
             CASE WHEN p.id IS NULL THEN i.mchid ELSE p.mchid END AS mchid,
             CASE WHEN p.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
               OR (p.status = 'DEAD' AND p.id NOT IN (SELECT id FROM reopened)) THEN p.status
               ELSE i.status::text END AS status
      FROM input i LEFT JOIN prior p ON p.id = i.id
    ),
    -- New APIv3 rows asked PROCESSING: the rows the twin check is made for (see upsertParsedNotification).
    checked AS (
      SELECT i.ord, i.id, i."otherFormId", i.mchid FROM input i
      WHERE i."apiVersion" = 'v3' AND i.status = 'PROCESSING' AND i.id NOT IN (SELECT id FROM prior)
    ),
    -- The rows under their other id forms, read once this statement holds each one's notification lock
    -- (wpn_notification_twins, migration 20261204100000): a parse of the other form running at the same instant has
    -- committed by then and its row is seen, although this statement's snapshot is older. One read by the primary key
    -- per row. Evaluated before \`up\` writes a row (it sorts its whole input first): no row lock is held meanwhile.
    others AS MATERIALIZED (
      SELECT * FROM wpn_notification_twins(
        ARRAY(SELECT id FROM checked ORDER BY ord), ARRAY(SELECT "otherFormId" FROM checked ORDER BY ord))
    ),
    -- The rows that are a resend of the row under their other id form: that row as an earlier row of the batch leaves
    -- it, else as \`others\` has it.
    twin AS (
      SELECT k.id, k."otherFormId" AS of FROM checked k
      LEFT JOIN planned b ON b.id = k."otherFormId" AND b.ord < k.ord
      LEFT JOIN others c ON c.out_id = k."otherFormId" AND b.id IS NULL
      WHERE COALESCE(b."apiVersion", c.out_api_version) = 'v3'
        AND CASE WHEN b.id IS NULL THEN c.out_mchid ELSE b.mchid END = k.mchid
        AND COALESCE(b.status, c.out_status) IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED', 'PROCESSING')
    ),
    -- Rows DUPLICATE already, as a resend (a re-run of their parse job): the row their DUPLICATE entry names. One read
    -- of the row's few events, for such rows only (the apply stage's DUPLICATE entries name none).
    resent AS (
      SELECT p.id, (
        SELECT e.detail->>'duplicateOf' FROM "NotificationEvent" e
        WHERE e."notificationId" = p.id AND e.kind = 'DUPLICATE' AND e.detail->>'duplicateOf' IS NOT NULL
        ORDER BY e.id DESC LIMIT 1
      ) AS of
      FROM prior p WHERE p.status = 'DUPLICATE'
    ),
    up AS (
      INSERT INTO "Notification" AS t
        (id, "apiVersion", "wechatId", mchid, "eventType", "receivedAt", headers, body, status,
         "outTradeNo", "transactionId", "outRefundNo", "subMchid", "errorCode", "lastError", "updatedAt")
      SELECT i.id, i."apiVersion", i."wechatId", i.mchid, i."eventType", i.received_at, i.headers, i.body,
             CASE WHEN tw.of IS NULL THEN i.status ELSE 'DUPLICATE' END,
             i."outTradeNo", i."transactionId", i."outRefundNo", i."subMchid", i."errorCode", i."lastError", i.at
      FROM input i LEFT JOIN twin tw ON tw.id = i.id
      ORDER BY i.id
      ON CONFLICT (id) DO UPDATE SET
        -- Final, or DEAD not reopened (its apply-stage letter waits for a replay): kept, with its code. A row created
        -- since the snapshot is not new: a twin's DUPLICATE (only ever asked PROCESSING) is PROCESSING as asked.
        status = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
          OR (t.status = 'DEAD' AND t.id NOT IN (SELECT id FROM reopened)) THEN t.status
          WHEN EXCLUDED.status = 'DUPLICATE' THEN 'PROCESSING' ELSE EXCLUDED.status END,
        "eventType" = EXCLUDED."eventType",
        "wechatId" = COALESCE(EXCLUDED."wechatId", t."wechatId"),
        "outTradeNo" = COALESCE(EXCLUDED."outTradeNo", t."outTradeNo"),
        "transactionId" = COALESCE(EXCLUDED."transactionId", t."transactionId"),
        "outRefundNo" = COALESCE(EXCLUDED."outRefundNo", t."outRefundNo"),
        "subMchid" = COALESCE(EXCLUDED."subMchid", t."subMchid"),
        "errorCode" = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
          OR (t.status = 'DEAD' AND t.id NOT IN (SELECT id FROM reopened)) THEN t."errorCode" ELSE EXCLUDED."errorCode" END,
        "lastError" = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
          OR (t.status = 'DEAD' AND t.id NOT IN (SELECT id FROM reopened)) THEN t."lastError" ELSE EXCLUDED."lastError" END,
        "updatedAt" = EXCLUDED."updatedAt"
      RETURNING t.id, t.status::text AS status, (t.xmax = 0) AS inserted
    ),
    ev AS (
      INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
      SELECT i.id, i.received_at, 'RECEIVED', jsonb_build_object('apiVersion', i."apiVersion") || i.detail
      FROM input i JOIN up ON up.id = i.id WHERE up.inserted
      UNION ALL
      SELECT i.id, i.at, CASE WHEN up.status = 'DEAD' THEN 'REDELIVERED' ELSE i.kind END, i.detail
      FROM input i JOIN up ON up.id = i.id LEFT JOIN prior p ON p.id = i.id
      WHERE i.kind IS NOT NULL AND COALESCE(p.status, '') NOT IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
        AND NOT (up.inserted AND i.kind = 'PARSED')
        -- Final, not as asked: a status it had, settled since the snapshot (a concurrent run created or settled it).
        AND NOT (NOT up.inserted AND up.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
          AND up.status <> i.status::text)
      UNION ALL
      -- A twin's copy: which row it is a resend of, with the parse detail.
      SELECT i.id, i.at, 'DUPLICATE', i.detail || jsonb_build_object('duplicateOf', tw.of)
      FROM input i JOIN up ON up.id = i.id JOIN twin tw ON tw.id = i.id
      WHERE up.inserted
    )
    SELECT up.id, up.status, up.inserted, CASE WHEN up.status = 'DUPLICATE' THEN COALESCE(tw.of, rs.of) END AS "duplicateOf"
    FROM input i JOIN up ON up.id = i.id LEFT JOIN twin tw ON tw.id = i.id LEFT JOIN resent rs ON rs.id = i.id
    ORDER BY i.ord`;
  if (rows.length !== batch.length || rows.some((row, i) => row.id !== batch[i]?.id)) {
    throw new NotificationBatchError(
      "BATCH_RESULT_MISMATCH",
      `upsert of ${batch.length} notification(s) returned ${rows.length} row(s) not in input order`,
    );
  }
  return rows.map(({ status, inserted, duplicateOf }) =>
    duplicateOf === null ? { status, inserted } : { status, inserted, duplicateOf },
  );
}

export interface FailureRecord {
  notificationId: string;
  /** Stage the attempt ran in, e.g. "notify.apply". */
  stage: string;
  code: string;
  /** One line, no payload contents. */
  message: string;
  /** 1-based attempt number of the failed attempt. */
  attempt: number;
  /** ms until the next attempt, when the worker knows it (it chose the delay, or BullMQ's has no jitter). */
  retryInMs?: number;
  /** [min, max] ms until the next attempt, when BullMQ draws the delay itself (its jitter) instead. */
  retryInMsRange?: [number, number];
}

/**
 * Records a failed attempt that will be retried: status FAILED, attempts + 1, the error, a FAILED event.
 * Does nothing to a notification already final or dead (a slower duplicate run must not undo a success).
 * Returns whether the row was updated.
 */
export async function recordNotificationFailure(prisma: PrismaClient, f: FailureRecord): Promise<boolean> {
  const detail = JSON.stringify({
    stage: f.stage,
    code: f.code,
    message: f.message,
    attempt: f.attempt,
    retryInMs: f.retryInMs ?? null,
    ...(f.retryInMsRange === undefined ? {} : { retryInMsRange: f.retryInMsRange }),
  });
  const rows = await prisma.$queryRaw<{ id: string }[]>`
    WITH u AS (
      UPDATE "Notification" SET status = 'FAILED', attempts = attempts + 1, "errorCode" = ${f.code}, "lastError" = ${f.message},
             "updatedAt" = (now() AT TIME ZONE 'UTC')::timestamp(3)
      WHERE id = ${f.notificationId} AND status NOT IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED', 'DEAD')
      RETURNING id
    ),
    ev AS (
      INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
      SELECT id, (now() AT TIME ZONE 'UTC')::timestamp(3), 'FAILED', ${detail}::jsonb FROM u
    )
    SELECT id FROM u`;
  return rows.length > 0;
}

/**
 * Records a dead letter of the notification: a DEAD_LETTERED event (stage, code, `deadLetterId`) and, unless the
 * notification is settled, status DEAD, attempts + 1 for the attempt that gave up, the reason. A settled notification
 * (APPLIED, DUPLICATE, REVIEW, IGNORED) keeps its status, attempts and error but gets the event too: its apply job may
 * still owe something — the apply committed and adding its event failed on the last attempt (QUEUE_UNAVAILABLE: the
 * event is only in the letter), a job stalled too often after its commit, an operator retried the failed job in
 * bull-board beside its letter — and the letter's replay (ALREADY, the event published) needs the row. The event
 * lists the letter on the dashboard and keeps `pruneNotifications` from deleting the row while the letter waits (as
 * does the prune's listing of `notify.dead`, which also sees a letter this could not record).
 * Returns whether the notification was marked DEAD.
 *
 * `updatedAt` moves for a settled row too: a prune that read the row before this committed sees it changed once it
 * has locked it, and keeps it (its snapshot does not show the event). The status is decided on the row's newest
 * version (the update's own re-check), so a row a concurrent run of the job settled meanwhile keeps its status and
 * gets the event; a row deleted meanwhile (a prune that locked it first) gets nothing.
 */
export async function markNotificationDead(
  prisma: PrismaClient,
  f: FailureRecord & { deadLetterId: string },
): Promise<boolean> {
  const detail = JSON.stringify({
    stage: f.stage,
    code: f.code,
    message: f.message,
    attempt: f.attempt,
    deadLetterId: f.deadLetterId,
  });
  const rows = await prisma.$queryRaw<{ dead: boolean }[]>`
    WITH u AS (
      UPDATE "Notification" AS t SET
        status = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') THEN t.status ELSE 'DEAD' END,
        attempts = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') THEN t.attempts ELSE t.attempts + 1 END,
        "errorCode" = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') THEN t."errorCode" ELSE ${f.code} END,
        "lastError" = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') THEN t."lastError" ELSE ${f.message} END,
        "updatedAt" = (now() AT TIME ZONE 'UTC')::timestamp(3)
      WHERE t.id = ${f.notificationId}
      RETURNING t.id, t.status = 'DEAD' AS dead
    ),
    ev AS (
      INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
      SELECT id, (now() AT TIME ZONE 'UTC')::timestamp(3), 'DEAD_LETTERED', ${detail}::jsonb FROM u
    )
    SELECT dead FROM u`;
  return rows[0]?.dead ?? false;
}
