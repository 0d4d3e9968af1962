import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { type BlockerSample, type BlockerWatch, describeBlockers } from "./blocking-sessions.ts";
import { cleanUpAfter } from "./cleanup.ts";
import { duration, type MigrateLog } from "./migrate-log.ts";
import type { MigrationFile } from "./migration-files.ts";

/** How a migration's transaction meets the locks of a live database. */
export interface LockRetry {
  /** PostgreSQL's lock_timeout for the transaction's statements, ms. */
  lockTimeoutMs: number;
  /** Transactions tried in all before MigrationBlockedError (1: no retry). */
  attempts: number;
  /** Wait before the second attempt, ms; doubled before each later one, up to MAX_RETRY_DELAY_MS. */
  retryDelayMs: number;
  /** Names the sessions a waiting statement is blocked by; opened here before a migration's first attempt. */
  watch: BlockerWatch;
  log: MigrateLog | undefined;
}

/** Longest wait between two attempts, ms: the lock's holder is a transaction that should end within seconds. */
const MAX_RETRY_DELAY_MS = 30_000;

/**
 * Why an attempt that failed on a lock is tried again, by SQLSTATE. lock_not_available: a statement waited
 * lock_timeout for a lock and was cancelled. deadlock_detected: the migration held a lock another transaction waited
 * for (a worker's payment locking "Order" then "Sku" while the migration altered them in the other order) and
 * PostgreSQL ended the migration's transaction to break the cycle. Either way the transaction rolled back whole and the
 * other transaction goes on, so the next attempt usually finds the locks free.
 */
const LOCK_FAILURES: Readonly<Record<string, LockFailure>> = { "55P03": "lock_timeout", "40P01": "deadlock" };
export type LockFailure = "lock_timeout" | "deadlock";

/**
 * Every attempt of a migration failed on a lock: waited longer than lock_timeout for one another session's transaction
 * held (a long report, a session left `idle in transaction`), or was chosen as a deadlock's victim. Nothing of it was
 * applied. `reason` is the last attempt's.
 */
export class MigrationBlockedError extends Error {
  readonly code = "MIGRATION_BLOCKED";
  constructor(
    readonly migration: string,
    readonly blockers: BlockerSample,
    retry: Pick<LockRetry, "lockTimeoutMs" | "attempts">,
    elapsedMs: number,
    readonly reason: LockFailure,
    options: ErrorOptions,
  ) {
    const ends = blockers.sessions.filter((s) => s.pid !== 0).map((s) => `SELECT pg_terminate_backend(${s.pid})`);
    const failed =
      reason === "deadlock"
        ? "was chosen as a deadlock's victim (another transaction waited for a lock it held while holding one it needed)"
        : `could not take its locks within lock_timeout ${duration(retry.lockTimeoutMs)}`;
    super(
      `migration ${migration} ${failed} in ${retry.attempts} attempt(s) over ${(elapsedMs / 1_000).toFixed(1)} s, blocked by ${describeBlockers(blockers)}; nothing of it was applied. Let that transaction end (or end it${ends.length > 0 ? `: ${ends.join("; ")}` : ""}), then migrate again; MIGRATE_LOCK_TIMEOUT_MS sets the lock timeout`,
      options,
    );
    this.name = "MigrationBlockedError";
  }
}

/**
 * Applies `migration` in a transaction of its own, recorded in it (`record`), with lock_timeout set: an ALTER TABLE
 * queued for its ACCESS EXCLUSIVE lock behind a long transaction makes every later statement on that table queue
 * behind it — on a sale day the workers stop applying payments until the long transaction ends. With the timeout the
 * queue lasts at most lock_timeout; the migration then rolls back (nothing applied), waits, and tries again, so a
 * short-lived holder costs a retry and a long one a clear MigrationBlockedError naming it, after `attempts`. A
 * deadlock whose victim PostgreSQL chose to be the migration's transaction is retried the same way. Other failures are thrown at once, naming the migration; a lost connection adds the ROLLBACK's failure as context.
 */
export async function applyInTransaction(
  client: pg.ClientBase,
  migration: MigrationFile,
  retry: LockRetry,
  record: () => Promise<void>,
): Promise<void> {
  // Before the first attempt, so that its lock wait is all spent sampling (at once after the first migration's).
  await retry.watch.open();
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    // Sampled throughout the attempt, every fifth of the lock timeout (at most every 500 ms, at least every 10 ms):
    // a process short of CPU that wakes late for some samples still takes one while a statement waits.
    const watch = retry.watch.watch(Math.min(Math.max(retry.lockTimeoutMs / 5, 10), 500));
    const failed = await attemptOnce(client, migration, retry.lockTimeoutMs, record);
    if (failed === undefined) {
      await watch.stop();
      return;
    }
    const failure = migrationFailure(migration, failed.error);
    // Before anything else: an aborted transaction keeps the locks its earlier statements took until it ends.
    let blockers: BlockerSample;
    try {
      await cleanUpAfter(failure, "ROLLBACK", () => client.query("ROLLBACK"));
    } finally {
      blockers = await watch.stop();
    }
    const code = (failed.error as { code?: unknown }).code;
    const reason = typeof code === "string" && Object.hasOwn(LOCK_FAILURES, code) ? LOCK_FAILURES[code] : undefined;
    if (reason === undefined) throw failure;
    if (attempt >= retry.attempts) {
      throw new MigrationBlockedError(migration.name, blockers, retry, Date.now() - started, reason, {
        cause: failed.error,
      });
    }
    const retryInMs = Math.min(retry.retryDelayMs * 2 ** (attempt - 1), MAX_RETRY_DELAY_MS);
    retry.log?.warn(
      {
        code: "MIGRATION_RETRY",
        migration: migration.name,
        attempt,
        attempts: retry.attempts,
        reason,
        lockTimeoutMs: retry.lockTimeoutMs,
        retryInMs,
        blockers: blockers.sessions,
      },
      `migration ${migration.name} ${reason === "deadlock" ? "was chosen as a deadlock's victim" : `waited longer than lock_timeout ${duration(retry.lockTimeoutMs)} for a lock`} (attempt ${attempt} of ${retry.attempts}), blocked by ${describeBlockers(blockers)}; rolled back, trying again in ${duration(retryInMs)}`,
    );
    await sleep(retryInMs);
  }
}

/** One transaction of the migration; what failed in it, or undefined once committed. */
async function attemptOnce(
  client: pg.ClientBase,
  migration: MigrationFile,
  lockTimeoutMs: number,
  record: () => Promise<void>,
): Promise<{ error: unknown } | undefined> {
  try {
    await client.query("BEGIN");
    // Local to the transaction: the session's other statements (the lock's polling, reading the records) keep the
    // server's setting.
    await client.query("SELECT set_config('lock_timeout', $1, true)", [`${lockTimeoutMs}ms`]);
    await client.query(migration.sql);
    await record();
    await client.query("COMMIT");
    return undefined;
  } catch (error) {
    return { error };
  }
}

/** The error that names the migration, PostgreSQL's message and, for a rule of this runner, the rule. */
function migrationFailure(migration: MigrationFile, error: unknown): Error {
  // 25001 active_sql_transaction: e.g. CREATE INDEX CONCURRENTLY beside other statements.
  const hint =
    (error as { code?: string }).code === "25001"
      ? " (only a migration whose one statement is CREATE INDEX CONCURRENTLY runs outside a transaction)"
      : "";
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`migration ${migration.name} failed: ${message}${hint}`, { cause: error });
}
