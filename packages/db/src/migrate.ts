import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { parseDatabaseUrl, quoteIdent } from "./database-url.ts";
import {
  MIGRATIONS_DIR,
  type MigrationFile,
  type MigrationPlan,
  planMigration,
  readMigrations,
} from "./migration-files.ts";
import { compareMigrations, readRecordedMigrations } from "./migration-state.ts";

/** Same definition Prisma's schema engine uses, so `prisma migrate deploy` can take over where it can run. */
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

/**
 * Arbitrary constant: every process that migrates holds this advisory lock for its whole run, so concurrent starts
 * apply each migration once. A session-level lock, not a transaction's: it must hold across the transaction of each
 * migration and across a concurrent index build, which runs outside any transaction.
 */
const MIGRATION_LOCK_KEY = 72_707_369;
/** How often a process waiting for another one's migration run asks for the lock again, ms. */
const LOCK_POLL_MS = 100;

/**
 * Creates the database named in `url` when it does not exist (connecting to the `postgres` maintenance database
 * only then). Answers whether this call created it.
 */
export async function ensureDatabase(url: string): Promise<boolean> {
  const target = parseDatabaseUrl(url);
  // The database itself first: a role allowed to connect only to its own database (no CONNECT on `postgres`, a
  // common production grant) must still be able to migrate it. Only a missing database (3D000) goes on.
  const own = new pg.Client({ connectionString: target.connectionString });
  let exists = true;
  try {
    await own.connect();
  } catch (error) {
    if ((error as { code?: string }).code !== "3D000") throw error;
    exists = false;
  }
  if (exists) {
    await own.end();
    return false;
  }
  const admin = new URL(target.connectionString);
  admin.pathname = "/postgres";
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [target.database]);
    if (found.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(target.database)}`);
    } catch (error) {
      // Another process created it between our check and CREATE: fine. Depending on the moment, PostgreSQL
      // says so as 42P04 (duplicate_database) or as a unique violation on pg_database's name index.
      const code = (error as { code?: string }).code;
      if (code !== "42P04" && code !== "23505") throw error;
    }
    return true;
  } finally {
    await client.end();
  }
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

/**
 * Applies every migration of `dir` not yet recorded in `_prisma_migrations`, in name order, and records each the way
 * `prisma migrate deploy` records a successful one. A migration runs in a transaction of its own, recorded in it —
 * except one whose only statement is CREATE INDEX CONCURRENTLY (see `planMigration`), sent on its own and recorded
 * once its index is built and valid. Refuses before applying anything when an applied migration's file changed
 * (checksum mismatch) or a migration is recorded as failed (left so by `prisma migrate deploy`), as Prisma does.
 * A failed migration is not recorded: its transaction is rolled back whole (a concurrent index build leaves an
 * INVALID index instead, dropped and built again by the next run), and the error names it.
 */
export async function migrate(url: string, dir: string = MIGRATIONS_DIR): Promise<MigrateResult> {
  const target = parseDatabaseUrl(url);
  const client = new pg.Client({ connectionString: target.connectionString });
  // pg reports a lost connection twice: the statement in flight (and every later one) fails, which is what migrate()
  // throws, and the client emits 'error', which would end the whole process were nobody listening. Nothing to add.
  client.on("error", () => undefined);
  await client.connect();
  try {
    // The lock is taken before anything else: even CREATE SCHEMA IF NOT EXISTS races between sessions.
    await acquireMigrationLock(client);
    const unlock = () => client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
    let result: MigrateResult;
    try {
      result = await applyPending(client, target.schema, dir);
    } catch (error) {
      return await cleanUpAfter(error, "releasing the migration lock", unlock);
    }
    await unlock();
    return result;
  } finally {
    await client.end();
  }
}

/** `migrate` once the lock is held. */
async function applyPending(client: pg.Client, schema: string, dir: string): Promise<MigrateResult> {
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await client.query(`SET search_path TO ${quoteIdent(schema)}`);
  await client.query(MIGRATIONS_TABLE);
  const files = readMigrations(dir);
  const state = compareMigrations(files, await readRecordedMigrations(client, schema));
  // As Prisma (P3009): a failed migration anywhere in the history stops everything, before anything runs.
  if (state.failed.length > 0) {
    throw new Error(`migration ${state.failed.join(", ")} failed earlier and needs manual resolution`);
  }
  const [modified] = state.modified;
  if (modified !== undefined) {
    throw new Error(`migration ${modified} was modified after it was applied (checksum mismatch)`);
  }
  // Every pending file's plan first: a malformed one stops the run before anything is applied.
  const pending = files
    .filter((file) => state.pending.includes(file.name))
    .map((file) => ({ file, plan: planMigration(file) }));
  for (const { file, plan } of pending) await applyOne(client, schema, file, plan);
  return { applied: pending.map(({ file }) => file.name), alreadyApplied: state.applied };
}

/**
 * Runs a cleanup step (ROLLBACK, releasing the lock) after `failure`, then throws `failure`. When the connection was
 * lost the step fails too ("Client … is not queryable"): that second error must not replace the first, which names
 * the migration and PostgreSQL's reason, so it is added to the first's message — what db:migrate and npm start print
 * — as "(then <step> failed too: …)". (PostgreSQL itself rolls back and releases the lock of a session it lost.)
 */
async function cleanUpAfter(failure: unknown, step: string, run: () => Promise<unknown>): Promise<never> {
  try {
    await run();
  } catch (cleanup) {
    const context = ` (then ${step} failed too: ${cleanup instanceof Error ? cleanup.message : String(cleanup)})`;
    if (!(failure instanceof Error)) throw new Error(`${String(failure)}${context}`, { cause: failure });
    failure.message += context;
  }
  throw failure;
}

/**
 * Waits for the migration lock by asking for it again and again rather than in one blocking pg_advisory_lock():
 * a session blocked in that statement holds a snapshot, and CREATE INDEX CONCURRENTLY waits for every transaction
 * with an older snapshot in the database to end — the lock holder's index build would wait for the waiting
 * process, which waits for the lock holder (PostgreSQL's deadlock detector then kills one of them). Between two
 * tries the waiting session holds nothing.
 */
async function acquireMigrationLock(client: pg.Client): Promise<void> {
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [
      MIGRATION_LOCK_KEY,
    ]);
    if (rows[0]?.locked) return;
    await sleep(LOCK_POLL_MS);
  }
}

async function applyOne(client: pg.Client, schema: string, migration: MigrationFile, plan: MigrationPlan) {
  if (plan.kind === "concurrent-index") return applyConcurrentIndex(client, schema, migration, plan.index);
  await client.query("BEGIN");
  try {
    await client.query(migration.sql);
    await record(client, migration);
    await client.query("COMMIT");
  } catch (error) {
    // 25001 active_sql_transaction: e.g. CREATE INDEX CONCURRENTLY beside other statements.
    const hint =
      (error as { code?: string }).code === "25001"
        ? " (only a migration whose one statement is CREATE INDEX CONCURRENTLY runs outside a transaction)"
        : "";
    const failure = new Error(`migration ${migration.name} failed: ${(error as Error).message}${hint}`, {
      cause: error,
    });
    await cleanUpAfter(failure, "ROLLBACK", () => client.query("ROLLBACK"));
  }
}

/**
 * A build that failed (a unique violation, a deadlock, a cancelled statement) or whose process died leaves its index
 * behind, INVALID: unused by queries, yet maintained on every write, and IF NOT EXISTS would skip it. It is dropped
 * first, concurrently too, so that a repeated run builds the index again rather than recording a broken one.
 */
async function applyConcurrentIndex(client: pg.Client, schema: string, migration: MigrationFile, index: string) {
  if ((await indexValidity(client, schema, index)) === "invalid") {
    await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${quoteIdent(schema)}.${quoteIdent(index)}`);
  }
  try {
    await client.query(migration.sql);
  } catch (error) {
    throw new Error(
      `migration ${migration.name} failed: ${(error as Error).message} (an INVALID index it left behind is dropped and built again by the next run)`,
      { cause: error },
    );
  }
  // IF NOT EXISTS also passes over another relation of that name: only a valid index of that name is the migration.
  const validity = await indexValidity(client, schema, index);
  if (validity !== "valid") {
    throw new Error(`migration ${migration.name} failed: index "${index}" is ${validity} after its build`);
  }
  await record(client, migration);
}

async function indexValidity(
  client: pg.Client,
  schema: string,
  index: string,
): Promise<"valid" | "invalid" | "missing"> {
  const { rows } = await client.query<{ valid: boolean }>(
    `SELECT i.indisvalid AS valid FROM pg_index i
     JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, index],
  );
  const row = rows[0];
  return row === undefined ? "missing" : row.valid ? "valid" : "invalid";
}

async function record(client: pg.Client, migration: MigrationFile): Promise<void> {
  await client.query(
    `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
     VALUES ($1, $2, now(), $3, now(), 1)`,
    [randomUUID(), migration.checksum, migration.name],
  );
}
