import { type ReplayRecordOutcome, recordReplay, recordReplayFailed } from "@wpn/db";
import {
  type DeadLetter,
  deadLetterSchema,
  decodeJob,
  QueueName,
  type ReplayAttempt,
  type ReplayOutcome,
  replayDeadLetter,
} from "@wpn/queue";
import { array2obj } from "bullmq";
import type { FastifyBaseLogger } from "fastify";
import type { SessionUser } from "../auth/session.ts";
import type { DashboardContext } from "../context.ts";
import { type DbClient, recordAudit } from "./audit.ts";
import { notJsonReason } from "./not-json.ts";

/** Job states a dead letter can be in (nothing consumes notify.dead, so normally `waiting`; BullMQ 6 keeps
 * a paused queue's jobs in `waiting` too). */
const LETTER_STATES = ["waiting", "prioritized", "delayed"] as const;
/** States a letter reaches only by hand (bull-board, a stray consumer): not listed, not replayable here, but counted
 * so that the page does not hide them. */
const MOVED_STATES = ["active", "completed", "failed"] as const;
/** Letters the page lists at most (the newest; bull-board has the rest). */
const DEAD_LETTER_LIST_LIMIT = 500;
/** Upper bound on one "replay selected" request. */
export const REPLAY_BATCH_LIMIT = 200;

export interface DeadLetterRow {
  id: string;
  /** When it was dead-lettered (job creation), ms since the epoch. */
  timestamp: number;
  /** The letter without its payload (`data` holds the original job, which is not shown). */
  letter?: Omit<DeadLetter, "data">;
  /** Why the payload could not be read, when it could not. */
  invalid?: string;
}

/**
 * The newest DEAD_LETTER_LIST_LIMIT letters across the three states, newest first (by the job's timestamp, when it was
 * dead-lettered), and how many letters there are: two Redis calls, however many letters. The letters come from one
 * Lua call, BullMQ's own `getJobs` script through the queue's Redis backend, which returns every listed id with its
 * job hash. `Queue.getJobs` runs that same script, then drops the hashes and reads each job again (an HGETALL per
 * letter), and the page asked each letter's state besides (a script call per letter, for a value it never showed): up
 * to 1,000 round trips for 500 letters on every render.
 *
 * Each state gives its first DEAD_LETTER_LIST_LIMIT in its own order (at most three times the limit read), and the
 * newest of those are kept: the page lists one limit's worth, as it says, not up to three. Exact for `waiting`, where
 * letters are (the list is in the order they were written); for `delayed` (ordered by when due) and `prioritized`
 * (by priority, then order of writing) it holds while their letters have one delay and one priority, as letters moved
 * there by hand in bull-board do unless someone sets them one by one.
 */
export async function listDeadLetters(
  ctx: DashboardContext,
  log: FastifyBaseLogger,
): Promise<{ rows: DeadLetterRow[]; total: number; moved: Record<(typeof MOVED_STATES)[number], number> }> {
  const dead = ctx.queues[QueueName.Dead];
  const [letters, counts] = await Promise.all([
    dead
      .getBackend()
      .getJobs([...LETTER_STATES], 0, DEAD_LETTER_LIST_LIMIT - 1, false)
      .then((states) => states.flat().map(([id, fields]) => letterRow(id, array2obj(fields))))
      .catch(() => letterRowsOneByOne(ctx)),
    dead.getJobCounts(...LETTER_STATES, ...MOVED_STATES),
  ]);
  const rows = letters.sort((a, b) => sortTime(b) - sortTime(a)).slice(0, DEAD_LETTER_LIST_LIMIT);
  const unreadable = rows.filter((row) => row.invalid !== undefined);
  if (unreadable.length > 0) {
    // One line per render, not per letter: a page of 500 broken letters would otherwise log 500 lines each time.
    log.warn(
      {
        code: "DEAD_LETTER_UNREADABLE",
        count: unreadable.length,
        letterIds: unreadable.slice(0, LOGGED_UNREADABLE_IDS).map((row) => row.id),
        reason: unreadable[0]?.invalid,
      },
      "dead letters whose payload cannot be read are listed as unreadable",
    );
  }
  const moved = { active: counts.active ?? 0, completed: counts.completed ?? 0, failed: counts.failed ?? 0 };
  const total = LETTER_STATES.reduce((sum, state) => sum + (counts[state] ?? 0), 0);
  return { rows, total, moved };
}

/**
 * The letters read one hash at a time, when the one-call read failed: its Lua script stops at the first listed id whose
 * key is not a hash (a stray id in a state list, a key overwritten by hand — HGETALL answers WRONGTYPE), which would
 * take every other letter with it. Here each id's HGETALL is its own command in one pipeline, so such an id is that
 * letter's `invalid` and the rest are listed.
 */
async function letterRowsOneByOne(ctx: DashboardContext): Promise<DeadLetterRow[]> {
  const dead = ctx.queues[QueueName.Dead];
  const ids = await dead.getRanges([...LETTER_STATES], 0, DEAD_LETTER_LIST_LIMIT - 1, false);
  const pipeline = ctx.redis.pipeline();
  for (const id of ids) pipeline.hgetall(dead.toKey(id));
  const replies = (await pipeline.exec()) ?? [];
  return ids.map((id, i) => {
    const [error, hash] = replies[i] ?? [new Error("no reply"), null];
    if (error) return { id, timestamp: Number.NaN, invalid: `its key is not a job: ${error.message}` };
    return letterRow(id, hash as Record<string, string>);
  });
}

/** Letter ids one DEAD_LETTER_UNREADABLE line names (the page lists them all). */
const LOGGED_UNREADABLE_IDS = 20;

/** A row's time for the order: one without a readable timestamp (a damaged hash) goes last. */
function sortTime(row: DeadLetterRow): number {
  return Number.isFinite(row.timestamp) ? row.timestamp : Number.NEGATIVE_INFINITY;
}

/**
 * A letter's row from its job hash: `data`, the JSON payload, and `timestamp`, ms, read as BullMQ's Job.fromJSON
 * reads them (a missing `data` is `{}`). A payload that is not JSON (a write cut short, a hand edit) is that letter's
 * `invalid`, as one that does not match its schema: one damaged letter must not take the whole page with it.
 */
function letterRow(id: string, hash: Record<string, string | undefined>): DeadLetterRow {
  const base = { id, timestamp: Number.parseInt(hash.timestamp ?? "", 10) };
  // A listed id with no hash: removed behind BullMQ's back, or a stray id in a state list.
  if (Object.keys(hash).length === 0) return { ...base, invalid: "no job under this id (its key is gone)" };
  let payload: unknown;
  try {
    payload = JSON.parse(hash.data || "{}");
  } catch (error) {
    return { ...base, invalid: notJsonReason("payload", error) };
  }
  const decoded = decodeJob(deadLetterSchema, payload);
  if (!decoded.ok) return { ...base, invalid: decoded.message };
  const { data: _payload, ...letter } = decoded.value;
  return { ...base, letter };
}

/**
 * Replays dead letters one by one with the pipeline's own functions: `replayDeadLetter` of @wpn/queue puts the
 * original job back into its stage queue under its original id, and its `onReplayed` hook — which runs BEFORE the job
 * is put back, the letter being removed only after that (why: ReplayDeps.onReplayed) — records the replay with
 * `recordReplay` of @wpn/db (REPLAYED NotificationEvent, status out of DEAD/FAILED; the same code path as the worker's
 * CLI) with the AuditLog row in the same transaction, so no job goes back unrecorded (nor is a replay recorded that
 * nobody audited). A failure anywhere is the letter's outcome `failed`, with its message, audited like every outcome
 * that is not `replayed`, and the other letters are still replayed; the letter stays in notify.dead and replaying it
 * again only re-runs an idempotent job. A failure after the hook (putting the job back) is undone by
 * `recordReplayFailed` of @wpn/db (the notification DEAD again, a REPLAY_FAILED event); the audit keeps both rows,
 * `replayed` and then `failed`. A replay an earlier call recorded and did not finish (its process died, or paused past
 * its claim while this call took the letter) is completed and audited `resumed`, without a second `replayed` row or
 * REPLAYED event; the earlier call, should it wake, stands down (`in-flight`).
 * Letters not replayed (not found, invalid payload, original still in flight, failed) are audited with their outcome.
 */
export async function replayDeadLetters(
  ctx: DashboardContext,
  ids: readonly string[],
  actor: SessionUser,
): Promise<ReplayOutcome[]> {
  const outcomes: ReplayOutcome[] = [];
  for (const id of ids) {
    const outcome = await replayDeadLetter(
      {
        connection: ctx.redis,
        prefix: ctx.prefix,
        onReplayed: (letter, attempt) => recordDeadLetterReplay(ctx, attempt, letter, actor),
        onReplayFailed: (letter, message, attempt) =>
          recordReplayFailed(ctx.db.prisma, {
            ...attempt,
            notificationId: letter.notificationId,
            queue: letter.queue,
            message,
            actor: actor.name,
          }),
      },
      id,
    );
    outcomes.push(outcome);
    if (outcome.status !== "replayed") {
      await recordAudit(
        ctx.db.prisma,
        {
          actor: actor.name,
          role: actor.role,
          action: "dead_letter.replay",
          target: id,
          detail: { outcome: outcome.status, message: outcome.message ?? null },
        },
        ctx.now(),
      );
    }
    ctx.metrics.actions.inc({
      action: "dead_letter.replay",
      result: outcome.status === "replayed" ? "ok" : outcome.status,
    });
  }
  return outcomes;
}

/**
 * The database side of one replay (the `onReplayed` hook of `replayDeadLetter`): the replay's record (`recordReplay`)
 * and its AuditLog row in ONE transaction. Written one after the other, an audit row that failed left the record
 * committed — the notification PROCESSING with no job waiting and no REPLAY_FAILED event, since the hook threw before
 * the add and `onReplayFailed` runs only when the add fails. Now the hook writes both or neither, and a failure is the
 * letter's outcome `failed` with the notification as it was (DEAD, its letter kept). The row is written only when this
 * replay is recorded: one that resumes an earlier replay's record, or stands down, is audited by its outcome.
 */
export async function recordDeadLetterReplay(
  ctx: DashboardContext,
  attempt: ReplayAttempt,
  letter: DeadLetter,
  actor: SessionUser,
): Promise<ReplayRecordOutcome> {
  const audit = async (db: DbClient, recorded: boolean): Promise<void> => {
    await recordAudit(
      db,
      {
        actor: actor.name,
        role: actor.role,
        action: "dead_letter.replay",
        target: attempt.letterId,
        detail: {
          outcome: "replayed",
          queue: letter.queue,
          jobId: letter.jobId,
          code: letter.code,
          notificationId: letter.notificationId,
          outTradeNo: letter.outTradeNo,
          notificationEventRecorded: recorded,
        },
      },
      ctx.now(),
    );
  };
  return recordReplay(
    ctx.db.prisma,
    {
      ...attempt,
      notificationId: letter.notificationId,
      queue: letter.queue,
      previousCode: letter.code,
      actor: actor.name,
    },
    audit,
  );
}
