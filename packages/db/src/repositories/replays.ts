import type { Prisma, PrismaClient } from "../generated/client.ts";
import type { NotificationRowStatus } from "./notifications.ts";

/**
 * The database side of a dead-letter replay (`onReplayed` / `onReplayFailed` of @wpn/queue's replayDeadLetter).
 *
 * A replay is recorded BEFORE its job goes back to its queue (why: ReplayDeps.onReplayed), so the record can outlive a
 * replay that never put the job back — its process killed between the two, or paused past its claim while another
 * replay took the letter. Each letter therefore has one row in "DeadLetterReplay", keyed by the letter's id, that says
 * whether its replay is recorded and which replay owns that record: `fence`, the replay's number for this letter
 * (@wpn/queue's ReplayClaim: each replay that takes the letter gets a higher one). Every write below is decided on that
 * row, locked, so the record is written once per replay whoever completes it:
 * - no row, or an undone one → this replay is recorded: the REPLAYED event (and `alongside`'s rows);
 * - a row of a lower fence, not undone → an earlier replay recorded it and did not finish: this one takes the record
 *   over (`fence`) and completes it, writing nothing again (`resumed`);
 * - a row of a higher fence → a later replay has the letter: this one writes nothing and stands down (`superseded`).
 * The undo (recordReplayFailed) is done only by the row's owner: a replay whose record a later one took over leaves
 * it, since that one puts the job back.
 * A letter's id is unique to the failed job instance it holds, so a row never meets another letter. Rows (one per
 * replayed letter, ~100 bytes) stay while their letter is in `notify.dead`; `db:prune` deletes one once its letter is
 * gone and it last changed (`changedAt`, moved by every write here) before the retention (prune-replays.ts, which
 * states why that cannot take a fence from a replay that still needs it).
 */

export interface ReplayRecord {
  /** The dead letter's job id in `notify.dead` (`<stage>.<job id>.<job timestamp>`). */
  letterId: string;
  /** The replay's number for this letter (@wpn/queue's ReplayClaim `fence`): a later replay has a higher one. */
  fence: number;
  /** The letter's notification; null for a letter that names none (nothing but the letter's row is written). */
  notificationId: string | null;
  /** Stage queue the job goes back to. */
  queue: string;
  /** The error code it had been dead-lettered with. */
  previousCode: string;
  /** Who asked (dashboard user, "cli"). */
  actor?: string;
}

/** What recordReplay did (see the module comment). */
export type ReplayRecordOutcome = "recorded" | "resumed" | "superseded";

/**
 * More rows to write in a replay record's own transaction — the dashboard's AuditLog row — given whether the
 * notification exists: they commit together with the record or neither does. Written as a separate statement after
 * the record committed, a failing one left the notification saying its job waits (PROCESSING) while the replay, its
 * hook having thrown, put no job back and undid nothing (`onReplayFailed` runs only when the add fails). Called only
 * when this replay is recorded (`recorded`), not for one that resumes or stands down.
 */
export type ReplayAlongside = (tx: Prisma.TransactionClient, notificationFound: boolean) => Promise<void>;

/**
 * Records a replay (see the module comment for when it writes): the letter's row, a REPLAYED event and, for a DEAD
 * or FAILED notification, the status it has when its job waits again (RECEIVED before parsing, PROCESSING before
 * applying) — except a parse letter's while the apply stage's letter waits (applyLetterWaits): DEAD stays —, and
 * `alongside`'s rows, in one transaction. Pass it as `onReplayed` to `replayDeadLetter` of @wpn/queue.
 */
export async function recordReplay(
  prisma: PrismaClient,
  r: ReplayRecord,
  alongside?: ReplayAlongside,
): Promise<ReplayRecordOutcome> {
  return prisma.$transaction(async (tx) => {
    const found = await lockNotification(tx, r.notificationId);
    const owner = await takeLetterRow(tx, r);
    if (owner !== "recorded") return owner;
    if (found && r.notificationId !== null) {
      // A parse letter replayed while the apply stage's letter waits: the row stays DEAD, as the parse keeps it then
      // (upsertParsedNotification) — moved to RECEIVED here, the parse moved it on to PROCESSING and enqueued an apply
      // job that the failed one (kept under the notification's id) swallowed: PROCESSING with no job, for good.
      const keep = r.queue === "notify.parse" && (await applyLetterWaits(tx, r.notificationId));
      await writeStep(tx, r.notificationId, {
        from: keep ? [] : ["DEAD", "FAILED"],
        to: waitingStatusOf(r.queue),
        kind: "REPLAYED",
        detail: { queue: r.queue, previousCode: r.previousCode, actor: r.actor ?? null, letterId: r.letterId },
      });
    }
    await alongside?.(tx, found);
    return "recorded";
  });
}

/**
 * Undoes `recordReplay` when the job could not be put back (`onReplayFailed` of @wpn/queue's replay), if this replay
 * (`fence`) still owns the record: the letter's row marked undone, the notification back to DEAD — its letter is
 * still in `notify.dead`, and no job waits — unless something else moved it on meanwhile, with a REPLAY_FAILED event
 * saying why. Returns whether it undid; false (nothing written) when a later replay took the record over.
 */
export async function recordReplayFailed(
  prisma: PrismaClient,
  r: Omit<ReplayRecord, "previousCode"> & { message: string },
): Promise<boolean> {
  return prisma.$transaction(async (tx) => {
    const found = await lockNotification(tx, r.notificationId);
    const undone = await tx.$queryRaw<unknown[]>`
      UPDATE "DeadLetterReplay" SET undone = true, "changedAt" = (now() AT TIME ZONE 'UTC')::timestamp(3)
      WHERE "letterId" = ${r.letterId} AND fence = ${r.fence} AND NOT undone
      RETURNING 1`;
    if (undone.length === 0) return false;
    if (found && r.notificationId !== null) {
      await writeStep(tx, r.notificationId, {
        from: [waitingStatusOf(r.queue)],
        to: "DEAD",
        kind: "REPLAY_FAILED",
        detail: { queue: r.queue, message: r.message, actor: r.actor ?? null, letterId: r.letterId },
      });
    }
    return true;
  });
}

/**
 * Whether the notification's apply stage has a letter waiting for its replay: its latest apply-stage letter event —
 * DEAD_LETTERED with `stage` notify.apply, or REPLAYED with `queue` notify.apply — is a DEAD_LETTERED. The rule of
 * upsertParsedNotifications' `reopened`, on the locked row; 'notify.apply' is QueueName.Apply of @wpn/queue.
 */
async function applyLetterWaits(tx: Prisma.TransactionClient, notificationId: string): Promise<boolean> {
  const [latest] = await tx.$queryRaw<{ kind: string }[]>`
    SELECT e.kind FROM "NotificationEvent" e
    WHERE e."notificationId" = ${notificationId}
      AND ((e.kind = 'DEAD_LETTERED' AND e.detail->>'stage' = 'notify.apply')
        OR (e.kind = 'REPLAYED' AND e.detail->>'queue' = 'notify.apply'))
    ORDER BY e.id DESC LIMIT 1`;
  return latest?.kind === "DEAD_LETTERED";
}

/** The status a notification has while its job waits in `queue`: RECEIVED before parsing, PROCESSING before applying. */
function waitingStatusOf(queue: string): NotificationRowStatus {
  return queue === "notify.parse" ? "RECEIVED" : "PROCESSING";
}

/**
 * Locks the notification's row (first, in every replay transaction: one lock order), so that the status change and
 * the event are decided on its newest version. As one statement (a CTE) both were decided on the statement's
 * snapshot: a failure committed meanwhile (a row that was PROCESSING in the snapshot and is FAILED or DEAD now) got
 * the REPLAYED event but kept its failed status. Returns whether the notification exists.
 */
async function lockNotification(tx: Prisma.TransactionClient, notificationId: string | null): Promise<boolean> {
  if (notificationId === null) return false;
  const locked = await tx.$queryRaw<unknown[]>`SELECT 1 FROM "Notification" WHERE id = ${notificationId} FOR UPDATE`;
  return locked.length > 0;
}

/**
 * Takes the letter's row for replay `r.fence`: `recorded` when this replay records it (no row yet, or an undone
 * one), `resumed` when it takes over an earlier replay's record, `superseded` when a later replay owns it. A
 * concurrent first insert of the same letter is waited for by ON CONFLICT, then read locked.
 */
async function takeLetterRow(tx: Prisma.TransactionClient, r: ReplayRecord): Promise<ReplayRecordOutcome> {
  const inserted = await tx.$queryRaw<unknown[]>`
    INSERT INTO "DeadLetterReplay" ("letterId", "notificationId", fence, actor, "changedAt")
    VALUES (${r.letterId}, ${r.notificationId}, ${r.fence}, ${r.actor ?? null}, (now() AT TIME ZONE 'UTC')::timestamp(3))
    ON CONFLICT ("letterId") DO NOTHING
    RETURNING 1`;
  if (inserted.length > 0) return "recorded";
  const [row] = await tx.$queryRaw<{ fence: number; undone: boolean }[]>`
    SELECT fence, undone FROM "DeadLetterReplay" WHERE "letterId" = ${r.letterId} FOR UPDATE`;
  if (!row || row.fence >= r.fence) return "superseded";
  // The record's actor stays whoever recorded it; a resumed replay is the caller's to report (the dashboard audits it).
  await tx.$executeRaw`
    UPDATE "DeadLetterReplay" SET
      fence = ${r.fence},
      undone = false,
      actor = CASE WHEN undone THEN ${r.actor ?? null} ELSE actor END,
      "changedAt" = (now() AT TIME ZONE 'UTC')::timestamp(3)
    WHERE "letterId" = ${r.letterId}`;
  return row.undone ? "recorded" : "resumed";
}

/**
 * One step of a replay's bookkeeping on the locked row: the status `from` → `to` (only from those: a notification
 * something else moved on keeps its status), an event `kind` and `updatedAt` either way. `updatedAt` moves for a
 * settled row too: the replayed job needs the row (it answers ALREADY and publishes the event it owes), and
 * `pruneNotifications` deletes only rows unchanged for the retention.
 */
async function writeStep(
  tx: Prisma.TransactionClient,
  notificationId: string,
  step: { from: NotificationRowStatus[]; to: NotificationRowStatus; kind: string; detail: Record<string, unknown> },
): Promise<void> {
  await tx.$executeRaw`
    UPDATE "Notification" SET
      status = CASE WHEN status::text = ANY(${step.from}) THEN ${step.to}::"NotificationStatus" ELSE status END,
      "updatedAt" = (now() AT TIME ZONE 'UTC')::timestamp(3)
    WHERE id = ${notificationId}`;
  await tx.$executeRaw`
    INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
    VALUES (${notificationId}, (now() AT TIME ZONE 'UTC')::timestamp(3), ${step.kind}, ${JSON.stringify(step.detail)}::jsonb)`;
}
