import { Prisma, type PrismaClient } from "./generated/client.ts";
import { pruneReplayRecords } from "./prune-replays.ts";

/**
 * Retention of the notification record (`npm run db:prune`, scripts/prune.ts). Notification rows and their
 * NotificationEvent timeline are the only tables that grow with every notification and carry no business state:
 * ~2.4 KB per applied notification (measured), plus one FAILED event per failed attempt.
 *
 * Only settled notifications whose outcome needs no one are deleted: APPLIED, DUPLICATE and IGNORED, unless a dead
 * letter in `notify.dead` names them (PruneOptions.waitingLetters; NO_APPLY_LETTER_WAITING besides). REVIEW (an order
 * or a notification waiting for a human), DEAD, FAILED, PROCESSING and RECEIVED rows are an operator's work list and
 * are never touched; nor are Order, Refund, InventoryMovement or AuditLog rows. The replay records
 * (`DeadLetterReplay`) go by the same cutoff once their letter is gone (prune-replays.ts, which states the invariant).
 *
 * Why a row a waiting letter names is kept rather than its replay answered with an error: a settled row's apply
 * letter (the apply committed; its event was not added on the last attempt, or the job stalled, or a bull-board retry
 * left the letter) is replayed to publish the event the job owed, which the replayed job derives from the row
 * (ALREADY). Without the row, the job is dead-lettered NOTIFICATION_NOT_FOUND on every replay — a clear code, but the
 * merchant's systems never hear of the payment, and the notification's timeline (its audit trail) is gone; nothing
 * outside the row could rebuild either (a re-created row would be answered DUPLICATE, which publishes nothing). A
 * parse letter's replay after the prune parses a new row, DUPLICATE of an original whose trace is gone. Keeping the
 * row costs ~2.4 KB per waiting letter, for as long as an operator leaves the letter unreplayed.
 *
 * Why a pruned notification is still applied at most once: the apply statements decide ALREADY from the
 * Notification row, but the business effect is guarded by rows that are never pruned — a payment by
 * `Order.transactionId` (set once, never cleared: the same transaction again is DUPLICATE) and the stock by the
 * unique `(orderId, skuId, reason)` of InventoryMovement; a refund by its order's Refund row of that out_refund_no (a
 * SUCCESS row is never moved again: DUPLICATE). A resend of a pruned notification gets a new row, answered
 * DUPLICATE, with no effect. So the minimum age below is not what exactly-once rests on; it keeps the row for
 * as long as something may still run for it (see MIN_RETENTION_DAYS).
 */
export const PRUNABLE_STATUSES = ["APPLIED", "DUPLICATE", "IGNORED"] as const;

/**
 * The shortest retention accepted, days, counted from both the notification's receipt and its last change.
 * A settled row still answers the jobs that can run after it was settled: an apply job whose commit succeeded
 * but whose answer was lost (connection dropped, worker crashed) runs again after its backoff — the 20th attempt
 * 3–6 days after the first (waits doubling from 1 s with ±50% jitter: at most 2^19 s ≈ 6.1 days in all) — and,
 * finding the row settled, answers ALREADY and still publishes the event it owes; without the row it would be
 * dead-lettered as NOTIFICATION_NOT_FOUND and the event lost. WeChat resends
 * for ~24 h (ingress receipts: 25 h by default), and Redis keeps a failed job 7 days (packages/queue/src/options.ts):
 * past 7 days nothing but a dead letter refers to the notification any more, and a row a letter names is kept
 * whatever its age (PruneOptions.waitingLetters). A replay moves `updatedAt`: the replayed job has the retention too.
 */
export const MIN_RETENTION_DAYS = 7;

/**
 * The database's own record of the letters, beside the listing of `notify.dead` (PruneOptions.waitingLetters), which
 * is what decides: the timeline cannot tell a replay that recorded REPLAYED and stopped before putting the job back
 * (the letter still waits) from one that finished, and has no event of a letter whose DEAD_LETTERED could not be
 * written (DEAD_NOT_RECORDED). Kept because it holds when the listing cannot — a prune run with another deployment's
 * REDIS_URL or QUEUE_PREFIX lists none of this one's letters — for one index probe per candidate row.
 *
 * A row's condition that no dead letter of its apply job waits in `notify.dead`, by its timeline: its latest
 * apply-stage letter event (DEAD_LETTERED with `stage` notify.apply — written for a settled row too, by
 * markNotificationDead —, REPLAYED or REPLAY_FAILED with `queue` notify.apply) is none or a REPLAYED. A settled row can
 * have such a letter: its apply committed and adding its event failed on the job's last attempt (the event is only in
 * the letter), a job stalled too often after its commit, a failed job retried in bull-board beside its letter. The
 * letter's replay answers ALREADY and publishes the event from the row; without the row it was dead-lettered
 * NOTIFICATION_NOT_FOUND on every replay and the event never published. REPLAY_FAILED: the job could not be put back,
 * the letter stayed. A REPLAYED row is kept for the retention after the replay (recordReplay moves `updatedAt`), while
 * the replayed job may run. Parse-stage letters are left to the listing, which keeps their rows too.
 * 'notify.apply' is QueueName.Apply. One probe per candidate row of the index of these events alone (partial: they
 * are rare; migration 20261204120000), which finds nothing for nearly every row. NOT IN rather than `= 'REPLAYED'`
 * (the same rows): PostgreSQL guesses that 0.5 % of rows pass an equality on an expression, so it priced a batch as
 * probing the whole table and JIT-compiled it (~30 ms a 5,000-row batch); `<>` is guessed to pass nearly every row.
 */
const NO_APPLY_LETTER_WAITING = Prisma.sql`COALESCE((
        SELECT e.kind FROM "NotificationEvent" e
        WHERE e."notificationId" = "Notification".id AND e.kind IN ('DEAD_LETTERED', 'REPLAYED', 'REPLAY_FAILED')
          AND e.detail->>CASE e.kind WHEN 'DEAD_LETTERED' THEN 'stage' ELSE 'queue' END = 'notify.apply'
        ORDER BY e.id DESC LIMIT 1
      ), '') NOT IN ('DEAD_LETTERED', 'REPLAY_FAILED')`;

const DAY_MS = 24 * 3_600_000;
/** Largest batch accepted: a batch is one statement under the 30 s statement_timeout, with ~3 rows per notification. */
export const MAX_PRUNE_BATCH = 50_000;

/** Thrown for an argument the prune refuses; `code` is stable. */
export class PruneError extends Error {
  override readonly name = "PruneError";
  constructor(
    /** PRUNE_RETENTION_INVALID: not `<days>d`. PRUNE_RETENTION_TOO_SHORT: under MIN_RETENTION_DAYS. PRUNE_BATCH_INVALID: not 1…MAX_PRUNE_BATCH. */
    readonly code: "PRUNE_RETENTION_INVALID" | "PRUNE_RETENTION_TOO_SHORT" | "PRUNE_BATCH_INVALID",
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** `90d` → 90 days in ms. Refuses anything else and anything under MIN_RETENTION_DAYS. */
export function parseRetention(text: string): number {
  const match = /^(\d{1,5})d$/.exec(text.trim());
  if (!match) throw new PruneError("PRUNE_RETENTION_INVALID", `retention "${text}" must be a number of days, e.g. 90d`);
  const days = Number(match[1]);
  checkRetention(days * DAY_MS);
  return days * DAY_MS;
}

function checkRetention(olderThanMs: number): void {
  if (!(olderThanMs >= MIN_RETENTION_DAYS * DAY_MS)) {
    throw new PruneError(
      "PRUNE_RETENTION_TOO_SHORT",
      `retention of ${olderThanMs / DAY_MS} day(s) is under the minimum of ${MIN_RETENTION_DAYS} days: a settled ` +
        "notification's row still answers re-run apply jobs and WeChat's resends until then",
    );
  }
}

/**
 * The dead letters in `notify.dead` and the notifications they name, read from the workers' Redis before the prune
 * starts (readWaitingLetters of @wpn/queue). A letter written after it is covered by the ages: the worker marks its
 * notification (markNotificationDead moves `updatedAt`) and a replay its record (`changedAt`) — a row changed now is
 * not eligible. Left open: the moment between the worker writing a letter and marking the row, for a settled row
 * unchanged for the whole retention whose job fails for good just then (a bull-board retry days after its failure).
 */
export interface WaitingLetters {
  letterIds: readonly string[];
  notificationIds: readonly string[];
}

export interface PruneOptions {
  /** Delete notifications received and last changed more than this long ago, ms (≥ MIN_RETENTION_DAYS). */
  olderThanMs: number;
  /** What waits in `notify.dead`: never deleted from under it. Required — an unread listing is not an empty one. */
  waitingLetters: WaitingLetters;
  /** Notifications per batch, each batch one statement (its own transaction). Default 5,000. */
  batchSize?: number;
  /** Count what would be deleted, delete nothing. */
  dryRun?: boolean;
  /** ms since the epoch the cutoff is counted from (default now). */
  now?: number;
  /** Called after each committed batch. */
  onBatch?: (batch: PruneCounts) => void;
}

export interface PruneCounts {
  /** Notifications by status. */
  notifications: Partial<Record<(typeof PRUNABLE_STATUSES)[number], number>>;
  /** Their NotificationEvent rows. */
  events: number;
}

export interface PruneResult extends PruneCounts {
  /** Rows received or changed before this instant were eligible. */
  cutoff: Date;
  /** Batches of notifications committed (0 for a dry run). */
  batches: number;
  dryRun: boolean;
  /** DeadLetterReplay rows deleted (or that would be, dry run): last changed before the cutoff, their letter gone. */
  replayRecords: number;
}

/** Where a batch ended: the last row it took, in ("receivedAt", id) order. */
interface Cursor {
  /** `receivedAt` in ISO 8601 to the microsecond (read back with ::timestamp whatever the DateStyle, nothing lost). */
  at: string;
  id: string;
}

/**
 * Deletes settled notifications older than the retention with their timeline, in batches until none is left
 * (or counts them, dry run, in the same batches), then the replay records the same cutoff allows (prune-replays.ts).
 * A notification a waiting letter names is not eligible. Each batch is one statement, so its own short transaction
 * (well under the 30 s statement_timeout), which locks its rows with SKIP LOCKED: a row a worker holds (a resend
 * being parsed, a dead letter being recorded) is left for the next run instead of waited for, and the status and ages
 * are checked again on the locked row, so a row a resend, a dead letter or a replay touched meanwhile is kept (each
 * moves `updatedAt`; the statement's snapshot may not show the letter's event). The events are deleted explicitly
 * (the foreign key would cascade too) so that they are counted.
 *
 * The batches walk the `receivedAt` index from the oldest row, each starting after the last row of the one
 * before: a batch that started from the beginning again would pass over every row the earlier batches deleted
 * (dead until vacuumed) or kept, and get slower with each batch on a table that had not been pruned for long.
 */
export async function pruneNotifications(prisma: PrismaClient, options: PruneOptions): Promise<PruneResult> {
  checkRetention(options.olderThanMs);
  const batchSize = options.batchSize ?? 5_000;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_PRUNE_BATCH) {
    throw new PruneError(
      "PRUNE_BATCH_INVALID",
      `batch size ${batchSize} must be an integer from 1 to ${MAX_PRUNE_BATCH}`,
    );
  }
  const cutoffMs = (options.now ?? Date.now()) - options.olderThanMs;
  const total: PruneResult = {
    cutoff: new Date(cutoffMs),
    notifications: {},
    events: 0,
    batches: 0,
    dryRun: options.dryRun ?? false,
    replayRecords: 0,
  };
  // Columns are `timestamp without time zone` holding UTC, as everywhere in the schema.
  const cutoff = Prisma.sql`(to_timestamp(${cutoffMs}::bigint / 1000.0) AT TIME ZONE 'UTC')`;
  let after: Cursor = { at: "-infinity", id: "" };
  for (;;) {
    const eligible = Prisma.sql`
      status = ANY(${[...PRUNABLE_STATUSES]}::"NotificationStatus"[])
      AND "receivedAt" < ${cutoff} AND "updatedAt" < ${cutoff}
      AND "receivedAt" >= ${after.at}::timestamp AND ("receivedAt" > ${after.at}::timestamp OR id > ${after.id})
      AND id <> ALL(${[...options.waitingLetters.notificationIds]}::text[])
      AND ${NO_APPLY_LETTER_WAITING}`;
    const [batch] = total.dryRun
      ? await prisma.$queryRaw<(PruneCounts & { last: Cursor | null })[]>`
          WITH doomed AS MATERIALIZED (
            SELECT id, status::text AS status, "receivedAt" FROM "Notification" WHERE ${eligible}
            ORDER BY "receivedAt", id LIMIT ${batchSize}
          )
          ${counts(Prisma.sql`doomed`, Prisma.sql`(SELECT count(*)::int FROM "NotificationEvent" WHERE "notificationId" IN (SELECT id FROM doomed))`)}`
      : await prisma.$queryRaw<(PruneCounts & { last: Cursor | null })[]>`
          WITH doomed AS MATERIALIZED (
            SELECT id, status::text AS status, "receivedAt" FROM "Notification" WHERE ${eligible}
            ORDER BY "receivedAt", id LIMIT ${batchSize}
            FOR UPDATE SKIP LOCKED
          ),
          ev AS (
            DELETE FROM "NotificationEvent" WHERE "notificationId" IN (SELECT id FROM doomed) RETURNING 1
          ),
          gone AS (
            DELETE FROM "Notification" WHERE id IN (SELECT id FROM doomed) RETURNING id
          )
          ${counts(Prisma.sql`doomed JOIN gone USING (id)`, Prisma.sql`(SELECT count(*)::int FROM ev)`)}`;
    if (!batch?.last) break;
    after = batch.last;
    total.events += batch.events;
    for (const [status, n] of Object.entries(batch.notifications) as [keyof PruneCounts["notifications"], number][]) {
      total.notifications[status] = (total.notifications[status] ?? 0) + n;
    }
    if (!total.dryRun) {
      total.batches += 1;
      options.onBatch?.({ notifications: batch.notifications, events: batch.events });
    }
  }
  total.replayRecords = await pruneReplayRecords(prisma, {
    cutoff,
    waitingLetterIds: options.waitingLetters.letterIds,
    batchSize,
    dryRun: total.dryRun,
  });
  return total;
}

/** The closing SELECT of a batch: its notifications by status, its events and its last row (null: none). */
function counts(taken: Prisma.Sql, events: Prisma.Sql): Prisma.Sql {
  return Prisma.sql`
    SELECT COALESCE((SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*)::int AS n FROM ${taken} GROUP BY status) s), '{}') AS notifications,
           ${events} AS events,
           (SELECT jsonb_build_object('at', to_char("receivedAt", 'YYYY-MM-DD"T"HH24:MI:SS.US'), 'id', id) FROM ${taken} ORDER BY "receivedAt" DESC, id DESC LIMIT 1) AS last`;
}
