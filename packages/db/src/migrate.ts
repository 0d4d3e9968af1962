import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import pg from "pg";
import { BlockerWatch } from "./blocking-sessions.ts";
import { cleanUpAfter } from "./cleanup.ts";
import { parseDatabaseUrl, quoteIdent } from "./database-url.ts";
import type { MigrateLog } from "./migrate-log.ts";
import {
  MIGRATIONS_DIR,
  type MigrationFile,
  type MigrationPlan,
  planMigration,
  readMigrations,
} from "./migration-files.ts";
import { acquireMigrationLock, MIGRATION_LOCK_KEY } from "./migration-lock.ts";
import { compareMigrations, MigrationStateError, readRecordedMigrations } from "./migration-state.ts";
import { applyInTransaction, type LockRetry } from "./migration-transaction.ts";

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
 * The defaults of `MigrateOptions`, which are also those of the settings the scripts pass (MIGRATE_LOCK_TIMEOUT_MS,
 * MIGRATE_WAIT_SECONDS in @wpn/config; README, "Database migrations"). 2 s of lock_timeout: the longest that the
 * statements queued behind a migration's lock request (the workers' payments) wait, per attempt. 5 attempts, 1 s
 * doubling between them: a holder gets ~25 s in all to end. 300 s for another process's run: far longer than the
 * committed migrations take; a run on a large table (a concurrent index build) may exceed it, and the process that
 * gave up just runs again.
 */
/**
 * How long the migrator waits for PostgreSQL to take a new connection (ms). Something at DATABASE_URL that accepts TCP
 * and then says nothing (a hung server, a proxy whose backend is gone, another service on the port) held `npm start`
 * and `npm run db:migrate` for ever without it.
 */
export const MIGRATE_CONNECT_TIMEOUT_MS = 10_000;

/** PostgreSQL took the TCP connection but did not complete the login within MIGRATE_CONNECT_TIMEOUT_MS. */
export class DatabaseConnectTimeoutError extends Error {
  readonly code = "DATABASE_CONNECT_TIMEOUT";
}

/**
 * `error` as a DatabaseConnectTimeoutError when it is pg's connect timeout (of a client made with
 * `connectionTimeoutMillis: MIGRATE_CONNECT_TIMEOUT_MS`), else `error` itself.
 */
export function namedConnectTimeout(error: unknown): unknown {
  // pg's own timeout has no code, only its message (pg.Client: "timeout expired"; pg-pool's: "…connection timeout").
  if (error instanceof Error && /^timeout expired$|connection timeout/i.test(error.message)) {
    return new DatabaseConnectTimeoutError(
      `PostgreSQL did not answer within ${MIGRATE_CONNECT_TIMEOUT_MS / 1_000} s of connecting`,
      { cause: error },
    );
  }
  return error;
}

/** Connects `client` (made with `connectionTimeoutMillis: MIGRATE_CONNECT_TIMEOUT_MS`), naming a timeout as one. */
async function connectWithin(client: pg.Client): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    throw namedConnectTimeout(error);
  }
}

export const MIGRATE_DEFAULTS = {
  lockTimeoutMs: 2_000,
  attempts: 5,
  retryDelayMs: 1_000,
  waitLimitMs: 300_000,
} as const;

export interface MigrateOptions {
  /** lock_timeout of each migration transaction's statements, ms (not of a concurrent index build: see below). */
  lockTimeoutMs?: number;
  /** Transactions tried per migration whose statements time out waiting for a lock, before MIGRATION_BLOCKED. */
  attempts?: number;
  /** Wait before a migration's second attempt, ms, doubled before each later one. */
  retryDelayMs?: number;
  /** How long to wait for another process's migration run (the migration lock), ms, before MIGRATION_LOCK_WAIT_TIMEOUT. */
  waitLimitMs?: number;
  /** Receives the waits and retries (MIGRATION_LOCK_WAIT, MIGRATION_RETRY); nothing is reported without it. */
  log?: MigrateLog;
}

/**
 * Creates the database named in `url` when it does not exist (connecting to the `postgres` maintenance database
 * only then). Answers whether this call created it.
 */
export async function ensureDatabase(url: string): Promise<boolean> {
  const target = parseDatabaseUrl(url);
  // The database itself first: a role allowed to connect only to its own database (no CONNECT on `postgres`, a
  // common production grant) must still be able to migrate it. Only a missing database (3D000) goes on.
  const own = new pg.Client({
    connectionString: target.connectionString,
    connectionTimeoutMillis: MIGRATE_CONNECT_TIMEOUT_MS,
  });
  let exists = true;
  try {
    await connectWithin(own);
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
  const client = new pg.Client({
    connectionString: admin.toString(),
    connectionTimeoutMillis: MIGRATE_CONNECT_TIMEOUT_MS,
  });
  await connectWithin(client);
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
 * Applies every migration of `dir` not yet recorded in `_prisma_migrations`, in Prisma's order (`prismaOrder`), and
 * records each the way `prisma migrate deploy` records a successful one. A migration runs in a transaction of its own,
 * recorded in it, with a short lock_timeout and retries (`applyInTransaction`: MIGRATION_BLOCKED after its attempts) —
 * except one whose only statement is CREATE INDEX CONCURRENTLY (see `planMigration`), sent on its own and recorded
 * once its index is built and valid. One run at a time per database: the migration lock, waited for at most
 * `waitLimitMs` (`acquireMigrationLock`: MIGRATION_LOCK_WAIT_TIMEOUT). Which rows count, and how, is Prisma's rule
 * (`compareMigrations`). Refuses before applying anything when a migration is recorded as failed (left so by
 * `prisma migrate deploy`), as Prisma does (P3009), and when an applied migration's file changed (checksum mismatch)
 * — stricter than `prisma migrate deploy`, which does not compare checksums (only `migrate dev` and `migrate status`
 * notice): an edited migration would leave this database unlike every other one migrated from the same history. A
 * failed migration is not recorded: its transaction is rolled back whole (a concurrent index build leaves an INVALID
 * index instead, dropped and built again by the next run), and the error names it.
 */
export async function migrate(
  url: string,
  dir: string = MIGRATIONS_DIR,
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const settings = {
    lockTimeoutMs: positive("lockTimeoutMs", options.lockTimeoutMs ?? MIGRATE_DEFAULTS.lockTimeoutMs),
    attempts: positive("attempts", options.attempts ?? MIGRATE_DEFAULTS.attempts),
    retryDelayMs: positive("retryDelayMs", options.retryDelayMs ?? MIGRATE_DEFAULTS.retryDelayMs),
    waitLimitMs: positive("waitLimitMs", options.waitLimitMs ?? MIGRATE_DEFAULTS.waitLimitMs),
    log: options.log,
  };
  const target = parseDatabaseUrl(url);
  // Named, so that a process waiting for this run, and an operator reading pg_stat_activity, can tell who migrates.
  // (PostgreSQL keeps 63 bytes of it: a long host name is cut, the pid stays.)
  const whose = `(pid ${process.pid} on ${hostname()})`;
  const client = new pg.Client({
    connectionString: target.connectionString,
    application_name: `wechatpay-notify:migrate ${whose}`,
    connectionTimeoutMillis: MIGRATE_CONNECT_TIMEOUT_MS,
  });
  // pg reports a lost connection twice: the statement in flight (and every later one) fails, which is what migrate()
  // throws, and the client emits 'error', which would end the whole process were nobody listening. Nothing to add.
  client.on("error", () => undefined);
  await connectWithin(client);
  let watch: BlockerWatch | undefined;
  try {
    // The lock is taken before anything else: even CREATE SCHEMA IF NOT EXISTS races between sessions.
    await acquireMigrationLock(client, settings.waitLimitMs, settings.log);
    const unlock = () => client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
    let result: MigrateResult;
    try {
      const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      watch = new BlockerWatch(
        { connectionString: target.connectionString, application_name: `wechatpay-notify:migrate-watch ${whose}` },
        rows[0]?.pid ?? 0,
      );
      result = await applyPending(client, target.schema, dir, { ...settings, watch });
    } catch (error) {
      await cleanUpAfter(error, "releasing the migration lock", unlock);
      throw error;
    }
    await unlock();
    return result;
  } finally {
    await watch?.close();
    await client.end();
  }
}

/** `value` when it is a whole number above 0: a lock_timeout of 0 would turn the timeout off, 0 attempts apply nothing. */
function positive(option: keyof MigrateOptions, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`migrate: ${option} must be a whole number above 0`);
  return value;
}

/** `migrate` once the lock is held. */
async function applyPending(client: pg.Client, schema: string, dir: string, retry: LockRetry): Promise<MigrateResult> {
  // Created only when missing, as Prisma does: CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the
  // database before it looks for the schema, refusing a role that owns its schema and may create nothing else.
  const { rows } = await client.query<{ found: boolean }>(
    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS found",
    [schema],
  );
  if (!rows[0]?.found) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await client.query(`SET search_path TO ${quoteIdent(schema)}`);
  const files = readMigrations(dir);
  // Read before the table is created: a schema of another application's tables without it is refused as it is.
  const recorded = await readRecordedMigrations(client, schema, files);
  await client.query(MIGRATIONS_TABLE);
  const state = compareMigrations(files, recorded);
  // As Prisma (P3009): a failed migration anywhere in the history stops everything, before anything runs; so does an
  // edited one. The apps' start-up check's error: one code, and what to do about each (the pending ones are this
  // run's to apply, once these are dealt with).
  if (state.failed.length > 0 || state.modified.length > 0) {
    throw new MigrationStateError(schema, { ...state, pending: [] });
  }
  // Every pending file's plan first: a malformed one stops the run before anything is applied.
  const pending = files
    .filter((file) => state.pending.includes(file.name))
    .map((file) => ({ file, plan: planMigration(file) }));
  for (const { file, plan } of pending) await applyOne(client, schema, file, plan, retry);
  return { applied: pending.map(({ file }) => file.name), alreadyApplied: state.applied };
}

async function applyOne(
  client: pg.Client,
  schema: string,
  migration: MigrationFile,
  plan: MigrationPlan,
  retry: LockRetry,
) {
  if (plan.kind === "concurrent-index") return applyConcurrentIndex(client, schema, migration, plan.index);
  await applyInTransaction(client, migration, retry, () => record(client, migration));
}

/**
 * A build that failed (a unique violation, a deadlock, a cancelled statement) or whose process died leaves its index
 * behind, INVALID: unused by queries, yet maintained on every write, and IF NOT EXISTS would skip it. It is dropped
 * first, concurrently too, so that a repeated run builds the index again rather than recording a broken one.
 * No lock_timeout here: the build's SHARE UPDATE EXCLUSIVE lock, granted or queued, blocks no reader or writer, and it
 * must wait for every older transaction to end (a lock wait too, which lock_timeout would cancel).
 */
async function applyConcurrentIndex(client: pg.Client, schema: string, migration: MigrationFile, index: string) {
  const { rows } = await client.query<{ now: Date }>("SELECT clock_timestamp() AS now");
  const startedAt = rows[0]?.now;
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
  await record(client, migration, startedAt);
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

/**
 * The row `prisma migrate deploy` leaves for a migration it applied: started_at when the migration started —
 * `startedAt`, or else the start of the transaction recording it (now()) — and finished_at when it finished
 * (clock_timestamp(): now() would be the transaction's start again).
 */
async function record(client: pg.Client, migration: MigrationFile, startedAt?: Date): Promise<void> {
  await client.query(
    `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
     VALUES ($1, $2, clock_timestamp(), $3, COALESCE($4::timestamptz, now()), 1)`,
    [randomUUID(), migration.checksum, migration.name, startedAt ?? null],
  );
}
