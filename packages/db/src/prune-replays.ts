import { Prisma, type PrismaClient } from "./generated/client.ts";

/**
 * Retention of the replay records (`DeadLetterReplay`, one row per replayed dead letter, ~100 bytes; written by
 * recordReplay and recordReplayFailed, repositories/replays.ts), run by `pruneNotifications` with the same cutoff.
 *
 * Invariant — a row is deleted only when BOTH hold:
 * 1. its letter is not in `notify.dead` (the listing read before the prune started). While the letter is there, the
 *    row is its replays' fence: it says whether a replay is recorded and which replay (`fence`) owns the record.
 *    The next replay of a letter whose replay recorded and stopped before putting the job back (process killed,
 *    paused past its claim) finds the row and completes that replay without recording it again (`resumed`); a
 *    replay a later one took the letter from finds the higher fence and stands down (`superseded`). Without the row
 *    both would record as new: a second REPLAYED event and a second dashboard audit row for one re-run. An undone row
 *    (the job could not be put back) stays too: whatever its letter's replays still do is decided on it.
 *    Once the letter is gone — a replay put its job back and removed it, or an operator deleted it — no replay can
 *    take it again: ReplayClaim refuses a missing letter, and a letter id is never written again (it names one
 *    failed job instance, `<stage>.<job id>.<job timestamp>`; a replayed job is a new instance, whose letter would
 *    be another id). So a listing read before the prune cannot miss a letter that matters: one added later has no
 *    old row, and one not listed will not come back.
 * 2. it last changed (`changedAt`) before the cutoff, at least MIN_RETENTION_DAYS ago. The only replay that can
 *    still write a row whose letter is gone is one that took the letter before the row's last change and is still
 *    running — paused for all that time, where a claim lasts 60 s unrenewed. Should one ever wake after its row was
 *    deleted, it records the replay, finds no letter to put back (the put-back script checks the letter's fence) and
 *    undoes its record: a REPLAYED and a REPLAY_FAILED on the notification's timeline, no job run, nothing applied.
 */

/** Where a batch ended: its last row's letter id (batches walk the primary key). */
type Cursor = string;

export interface ReplayPruneOptions {
  /** Rows last changed before this instant are eligible (timestamp without time zone, UTC). */
  cutoff: Prisma.Sql;
  /** The letters in `notify.dead` (see the invariant). */
  waitingLetterIds: readonly string[];
  batchSize: number;
  /** Count what would be deleted, delete nothing. */
  dryRun: boolean;
}

/**
 * Deletes the replay records the invariant above allows, in batches of one statement each that lock their rows SKIP
 * LOCKED — a replay recording its letter holds the row, which is left for the next run and checked again on its
 * newest version (a replay moves `changedAt`). Returns how many rows went (or would, dry run).
 */
export async function pruneReplayRecords(prisma: PrismaClient, options: ReplayPruneOptions): Promise<number> {
  let total = 0;
  let after: Cursor = "";
  for (;;) {
    const eligible = Prisma.sql`
      "letterId" > ${after} AND "changedAt" < ${options.cutoff}
      AND "letterId" <> ALL(${[...options.waitingLetterIds]}::text[])`;
    const [batch] = options.dryRun
      ? await prisma.$queryRaw<{ n: number; last: Cursor | null }[]>`
          WITH doomed AS MATERIALIZED (
            SELECT "letterId" FROM "DeadLetterReplay" WHERE ${eligible} ORDER BY "letterId" LIMIT ${options.batchSize}
          )
          SELECT count(*)::int AS n, max("letterId") AS last FROM doomed`
      : await prisma.$queryRaw<{ n: number; last: Cursor | null }[]>`
          WITH doomed AS MATERIALIZED (
            SELECT "letterId" FROM "DeadLetterReplay" WHERE ${eligible} ORDER BY "letterId" LIMIT ${options.batchSize}
            FOR UPDATE SKIP LOCKED
          ),
          gone AS (
            DELETE FROM "DeadLetterReplay" WHERE "letterId" IN (SELECT "letterId" FROM doomed) RETURNING "letterId"
          )
          SELECT count(*)::int AS n, max("letterId") AS last FROM gone`;
    if (!batch?.last) return total;
    total += batch.n;
    after = batch.last;
  }
}
