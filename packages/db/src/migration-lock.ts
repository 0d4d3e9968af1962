import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { type BlockingSession, describeSession, readSessions } from "./blocking-sessions.ts";
import { duration, type MigrateLog } from "./migrate-log.ts";

/**
 * Prisma's key (`prisma migrate deploy` takes the same one): every process that migrates holds this advisory lock for
 * its whole run, so concurrent starts apply each migration once. A session-level lock, not a transaction's: it must
 * hold across the transaction of each migration and across a concurrent index build, which runs outside any
 * transaction.
 */
export const MIGRATION_LOCK_KEY = 72_707_369;
/** How often a process waiting for another one's migration run asks for the lock again, ms. */
const LOCK_POLL_MS = 100;

/** Another session held the migration lock for longer than this process would wait: nothing was applied here. */
export class MigrationLockWaitError extends Error {
  readonly code = "MIGRATION_LOCK_WAIT_TIMEOUT";
  constructor(
    /** The holder when the wait ended; null when it could not be read. */
    readonly holder: BlockingSession | null,
    readonly waitLimitMs: number,
  ) {
    const who = holder === null ? "a session that could not be read" : describeSession(holder);
    const end = holder === null || holder.pid === 0 ? "" : ` (SELECT pg_terminate_backend(${holder.pid}))`;
    super(
      `another process has held the migration lock for more than ${duration(waitLimitMs)} — ${who} — and may still be applying migrations: nothing was applied here. Let it finish and migrate again, or end that session if it is stuck${end}; MIGRATE_WAIT_SECONDS sets how long to wait`,
    );
    this.name = "MigrationLockWaitError";
  }
}

/**
 * Takes the migration lock, waiting for another session's run at most `waitLimitMs` (then MigrationLockWaitError).
 * A wait is reported once, when it starts, naming the holder (`MIGRATION_LOCK_WAIT`): before, a process behind a
 * long run, or behind a session that never let go, polled in silence for ever.
 *
 * It asks for the lock again and again rather than in one blocking pg_advisory_lock(): a session blocked in that
 * statement holds a snapshot, and CREATE INDEX CONCURRENTLY waits for every transaction with an older snapshot in the
 * database to end — the lock holder's index build would wait for the waiting process, which waits for the lock holder
 * (PostgreSQL's deadlock detector then kills one of them). Between two tries the waiting session holds nothing.
 */
export async function acquireMigrationLock(
  client: pg.ClientBase,
  waitLimitMs: number,
  log: MigrateLog | undefined,
): Promise<void> {
  if (await tryLock(client)) return;
  const deadline = Date.now() + waitLimitMs;
  const holder = await readLockHolder(client);
  log?.warn(
    { code: "MIGRATION_LOCK_WAIT", holder, waitLimitMs },
    `another process is applying migrations (it holds the migration lock: ${holder === null ? "a session that could not be read" : describeSession(holder)}); waiting for it to finish, at most ${duration(waitLimitMs)}`,
  );
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new MigrationLockWaitError(await readLockHolder(client), waitLimitMs);
    await sleep(Math.min(LOCK_POLL_MS, left));
    if (await tryLock(client)) return;
  }
}

async function tryLock(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [
    MIGRATION_LOCK_KEY,
  ]);
  return rows[0]?.locked === true;
}

/**
 * The session holding the migration lock in this database, from pg_locks: a bigint advisory key is stored as its high
 * and low 32 bits (classid, objid) with objsubid 1. Null when nobody holds it any more.
 */
async function readLockHolder(client: pg.ClientBase): Promise<BlockingSession | null> {
  const [holder] = await readSessions(
    client,
    `ARRAY(SELECT l.pid FROM pg_locks l
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid)`,
    [Math.floor(MIGRATION_LOCK_KEY / 2 ** 32), MIGRATION_LOCK_KEY % 2 ** 32],
  );
  return holder ?? null;
}
