import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { parseDatabaseUrl, quoteIdent } from "./database-url.ts";
import type { MigrateLog } from "./migrate-log.ts";
import {
  MIGRATIONS_DIR,
  type MigrationFile,
  MigrationFilesError,
  prismaOrder,
  readMigrations,
} from "./migration-files.ts";
import { acquireMigrationLock } from "./migration-lock.ts";

/** A row of `_prisma_migrations`, the columns that say whether and how a migration was applied. */
export interface RecordedMigration {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

/** The committed migrations compared with what a database recorded. Each list holds migration names, in order. */
export interface MigrationState {
  /** Recorded as finished, with the checksum of the file (or of its other line endings). */
  applied: string[];
  /** Committed, never recorded (or recorded, then marked rolled back with `prisma migrate resolve`). */
  pending: string[];
  /**
   * Recorded without `finished_at` and not marked rolled back: a migration `prisma migrate deploy` left failed (this
   * project's migrator records nothing for a failure) — also when another row of the same name finished, and when the
   * migration is no longer on disk. As Prisma (P3009), any such row stops every run.
   */
  failed: string[];
  /** Recorded as finished with another checksum: the file was edited after it was applied. */
  modified: string[];
}

/**
 * Compares the files with the recorded rows as `prisma migrate deploy` does (Prisma's apply_migrations): a row marked
 * rolled back (`rolled_back_at`) counts for nothing, finished or not, so its migration is applied again; any other row
 * without `finished_at` is a failed migration; a committed migration with no other row is pending. `prisma migrate
 * resolve --applied` marks a failed row rolled back before it adds a finished one, so a history it resolved has no
 * failed row left. Rows of migrations not on disk (a database migrated by a newer release) are ignored unless they
 * failed. The checksum of a finished row is ours to compare (deploy does not): see `modified`.
 */
export function compareMigrations(files: readonly MigrationFile[], rows: readonly RecordedMigration[]): MigrationState {
  const counted = rows.filter((row) => row.rolled_back_at === null);
  const failed = new Set(counted.filter((row) => row.finished_at === null).map((row) => row.migration_name));
  /** The first finished row of each migration (rows come in started_at order). */
  const finished = new Map<string, RecordedMigration>();
  for (const row of counted) {
    if (row.finished_at !== null && !finished.has(row.migration_name)) finished.set(row.migration_name, row);
  }
  const state: MigrationState = { applied: [], pending: [], failed: [...failed].sort(prismaOrder), modified: [] };
  for (const file of files) {
    const row = finished.get(file.name);
    if (row === undefined) {
      if (!failed.has(file.name)) state.pending.push(file.name);
    } else if (!file.acceptedChecksums.includes(row.checksum)) state.modified.push(file.name);
    else state.applied.push(file.name);
  }
  return state;
}

/** The columns of `_prisma_migrations` this project reads (and Prisma writes). */
const RECORD_COLUMNS = ["migration_name", "checksum", "finished_at", "rolled_back_at", "started_at"] as const;

/**
 * Reads `_prisma_migrations` of `schema` (no rows when the table does not exist). Throws ForeignMigrationsError when
 * it is not this project's history: a table without Prisma's columns (another tool's), rows none of which names a
 * migration of `files` (another Prisma application's database), or no such table in a schema that holds tables
 * (another application's, as Prisma's P3005). A newer release's history holds this one's too.
 */
export async function readRecordedMigrations(
  client: pg.ClientBase,
  schema: string,
  files: readonly MigrationFile[],
): Promise<RecordedMigration[]> {
  const table = `${quoteIdent(schema)}."_prisma_migrations"`;
  const exists = await client.query<{ found: boolean }>("SELECT to_regclass($1) IS NOT NULL AS found", [table]);
  if (!exists.rows[0]?.found) {
    await refuseUnrecordedTables(client, schema);
    return [];
  }
  const columns = await client.query<{ name: string }>(
    "SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    [table],
  );
  const present = new Set(columns.rows.map((c) => c.name));
  const missing = RECORD_COLUMNS.filter((c) => !present.has(c));
  if (missing.length > 0) {
    throw new ForeignMigrationsError(schema, `its _prisma_migrations has no ${missing.join(", ")}: not Prisma's`);
  }
  const { rows } = await client.query<RecordedMigration>(
    `SELECT migration_name, checksum, finished_at, rolled_back_at FROM ${table} ORDER BY started_at`,
  );
  const ours = new Set(files.map((file) => file.name));
  if (rows.length > 0 && !rows.some((row) => ours.has(row.migration_name))) {
    throw new ForeignMigrationsError(
      schema,
      `${migrations(rows.map((row) => row.migration_name))} recorded, none of them in prisma/migrations`,
    );
  }
  return rows;
}

/**
 * Prisma's rule for a schema without `_prisma_migrations` (its `initialize`, P3005 "The database schema is not
 * empty"): any ordinary table in it but PostGIS's own (`spatial_ref_sys`, `geometry_columns`) makes it a schema
 * nobody migrated from these files — another application's, whose tables ours would be created beside.
 */
async function refuseUnrecordedTables(client: pg.ClientBase, schema: string): Promise<void> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind = 'r' AND lower(c.relname) NOT IN ('spatial_ref_sys', 'geometry_columns')
     ORDER BY c.relname`,
    [schema],
  );
  if (rows.length === 0) return;
  const names = rows.map((row) => row.name);
  const shown = names.length <= 3 ? names.join(", ") : `${names.slice(0, 3).join(", ")} and ${names.length - 3} more`;
  throw new ForeignMigrationsError(
    schema,
    `${names.length} table(s): ${shown}; no _prisma_migrations, so not migrated from prisma/migrations — Prisma's P3005`,
    "another application's tables",
  );
}

/**
 * `_prisma_migrations` holds another application's history, or the schema holds its tables and no history at all:
 * DATABASE_URL names that application's database (or schema). Applying this project's migrations there would create
 * its tables beside the other's; nothing is applied, and an app stops as for DB_NOT_MIGRATED.
 */
export class ForeignMigrationsError extends Error {
  readonly code = "MIGRATIONS_FOREIGN";
  constructor(
    readonly schema: string,
    detail: string,
    holds = "another application's migration history",
  ) {
    super(
      `schema "${schema}" holds ${holds} (${detail}): DATABASE_URL names another application's database or schema; point it at this project's own (a new database, which \`npm run db:migrate\` creates, or a schema of its own with ?schema=)`,
    );
    this.name = "ForeignMigrationsError";
  }
}

/** Names a few migrations; a long run (an empty database) by its count, first and last. */
function migrations(names: readonly string[]): string {
  if (names.length === 1) return `migration ${names[0]}`;
  if (names.length <= 3) return `migrations ${names.join(", ")}`;
  return `${names.length} migrations (${names[0]} … ${names.at(-1)})`;
}

/** The database is not at the committed migrations: the app would fail on every statement that needs them. */
export class MigrationStateError extends Error {
  readonly code = "DB_NOT_MIGRATED";
  constructor(
    readonly schema: string,
    readonly state: MigrationState,
  ) {
    const problems: string[] = [];
    if (state.failed.length > 0) {
      problems.push(
        `${migrations(state.failed)} failed earlier (left unfinished in _prisma_migrations): fix the cause, mark it with \`npx prisma migrate resolve\`, then run \`npm run db:migrate\``,
      );
    }
    if (state.modified.length > 0) {
      problems.push(
        `${migrations(state.modified)} modified after it was applied (checksum differs from _prisma_migrations): restore the file as it was applied`,
      );
    }
    if (state.pending.length > 0) {
      problems.push(
        `${migrations(state.pending)} not applied: run \`npm run db:migrate\` (Docker Compose: \`docker compose run --rm migrate\`)`,
      );
    }
    super(`database schema "${schema}" is not at the committed migrations: ${problems.join("; ")}`);
    this.name = "MigrationStateError";
  }
}

export interface VerifyMigrationsOptions {
  dir?: string;
  /** Give up connecting after this long, ms. */
  connectTimeoutMs?: number;
  /**
   * How long to wait for another process's migration run (the migration lock) before the verdict, ms; then
   * MIGRATION_LOCK_WAIT_TIMEOUT, which the start-up checks treat as a check that could not be made.
   */
  lockWaitMs?: number;
  /** Receives MIGRATION_LOCK_WAIT when the check waits for another process's run. */
  log?: MigrateLog;
}

/**
 * 60 s: the committed migrations take far less; an app behind a longer run (an index build on a large table) starts
 * unchecked (ingress, dashboard) or checks again (worker) rather than waiting out a deployment's start.
 */
const CHECK_LOCK_WAIT_MS = 60_000;

/**
 * For an app at start: resolves when every committed migration is applied, unmodified, and none failed; throws
 * MigrationStateError naming the migrations otherwise, MigrationFilesError (before connecting) when this machine's
 * migration files cannot be read. Reads only (creates nothing). Other errors (the database cannot be reached) are
 * thrown as they come: the check could not be made.
 *
 * A database not at the committed migrations is judged again under the migration lock (Prisma's key, which `prisma
 * migrate deploy` and `migrate` hold for their whole run): while another process migrates, its row of the migration in
 * progress has no finished_at — a failed migration by the rows alone — and the migrations after it are pending. The
 * check waits for that run (at most `lockWaitMs`: MigrationLockWaitError) and gives the verdict of what it left.
 * A database at the committed migrations is not held up by another session's lock.
 */
export async function verifyMigrations(url: string, options: VerifyMigrationsOptions = {}): Promise<void> {
  const target = parseDatabaseUrl(url);
  const files = readMigrations(options.dir ?? MIGRATIONS_DIR);
  const client = new pg.Client({
    connectionString: target.connectionString,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    query_timeout: 10_000,
    application_name: "wechatpay-notify:migration-check",
  });
  await client.connect();
  let state: MigrationState;
  try {
    state = compareMigrations(files, await readRecordedMigrations(client, target.schema, files));
    if (!atCommitted(state)) {
      // Released when the connection ends, just below.
      await acquireMigrationLock(client, options.lockWaitMs ?? CHECK_LOCK_WAIT_MS, options.log);
      state = compareMigrations(files, await readRecordedMigrations(client, target.schema, files));
    }
  } finally {
    await client.end();
  }
  if (!atCommitted(state)) throw new MigrationStateError(target.schema, state);
}

function atCommitted(state: MigrationState): boolean {
  return state.pending.length + state.failed.length + state.modified.length === 0;
}

/** The logger methods the start-up check uses (a pino logger has them). */
export interface StartupLogger {
  fatal(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/**
 * The ingress's and dashboard's start-up check (README, "Database migrations"). A database that answers without the
 * committed migrations (`npm run db:migrate` not run, a failed or edited one) stops the process: logged as
 * DB_NOT_MIGRATED, naming them, exit 78 like a configuration error — the orchestrator restarts it and shows it
 * failing, where a process that started anyway answered ready and failed every request. A database that cannot be
 * reached cannot be checked: logged as MIGRATIONS_UNCHECKED and the app starts as before (its readiness reports
 * PostgreSQL; the ingress needs none to take notifications). The worker waits instead: `waitForMigrationsOrExit`.
 * Migration files that cannot be read (a folder without migration.sql: MigrationFilesError) stop the process too,
 * logged with their code and path, exit 78: no database can be checked against them, and no wait fixes them.
 */
export async function verifyMigrationsOrExit(
  url: string,
  log: StartupLogger,
  options: VerifyMigrationsOptions = {},
): Promise<void> {
  try {
    await verifyMigrations(url, { log, ...options });
  } catch (error) {
    if (error instanceof MigrationStateError) exitNotMigrated(error, log);
    if (error instanceof ForeignMigrationsError) exitForeign(error, log);
    if (error instanceof MigrationFilesError) exitFilesUnreadable(error, log);
    if (checkFailure(error) === "unusable") exitUnusable(error, log, url);
    log.warn(
      { code: "MIGRATIONS_UNCHECKED", err: error instanceof Error ? error.message : String(error) },
      "could not check the database's migrations; starting anyway",
    );
  }
}

export interface WaitForMigrationsOptions extends VerifyMigrationsOptions {
  /** Ends the wait (SIGTERM): the function then resolves false at once. */
  signal?: AbortSignal;
  /** Wait after the first failed check, ms; doubled after each, up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** 1 s doubling to 15 s: a database back within seconds is used at once, a long outage costs a check per 15 s. */
const WAIT_INITIAL_DELAY_MS = 1_000;
const WAIT_MAX_DELAY_MS = 15_000;

/**
 * The worker's start-up check: as `verifyMigrationsOrExit` (DB_NOT_MIGRATED, unreadable migration files → exit 78),
 * but a database that cannot be reached is checked again — logged as MIGRATIONS_UNCHECKED at warn each time, with the
 * wait before the next check — until it answers. A worker that started anyway would take jobs that all fail (each using an attempt) and
 * would never check the migrations of the database that comes back. Resolves true once the migrations are checked,
 * false when `signal` aborts the wait (a check in flight is abandoned, not awaited).
 */
export async function waitForMigrationsOrExit(
  url: string,
  log: StartupLogger,
  options: WaitForMigrationsOptions = {},
): Promise<boolean> {
  const { signal } = options;
  const aborted = new Promise<"aborted">((resolve) => {
    if (signal?.aborted) resolve("aborted");
    signal?.addEventListener("abort", () => resolve("aborted"), { once: true });
  });
  let delayMs = options.initialDelayMs ?? WAIT_INITIAL_DELAY_MS;
  for (let check = 1; ; check++) {
    const verified = verifyMigrations(url, { log, ...options }).then(() => "verified" as const);
    // Abandoned when the wait is aborted first: its failure must not become an unhandled rejection.
    verified.catch(() => undefined);
    try {
      if ((await Promise.race([verified, aborted])) === "aborted") return false;
      return true;
    } catch (error) {
      if (error instanceof MigrationStateError) exitNotMigrated(error, log);
      if (error instanceof ForeignMigrationsError) exitForeign(error, log);
      if (error instanceof MigrationFilesError) exitFilesUnreadable(error, log);
      const failure = checkFailure(error);
      if (failure === "unusable") exitUnusable(error, log, url);
      if (failure === "unreadable") {
        // PostgreSQL answers; only the migrations table is closed to this role. Waiting would not open it.
        log.warn(
          { code: "MIGRATIONS_UNCHECKED", err: error instanceof Error ? error.message : String(error) },
          "could not read the database's migrations (grant SELECT on _prisma_migrations); starting anyway",
        );
        return true;
      }
      log.warn(
        {
          code: "MIGRATIONS_UNCHECKED",
          err: error instanceof Error ? error.message : String(error),
          check,
          retryInMs: delayMs,
        },
        "could not check the database's migrations; waiting for PostgreSQL before taking jobs",
      );
    }
    const slept = await sleep(delayMs, undefined, signal ? { signal } : {}).then(
      () => "slept" as const,
      () => "aborted" as const,
    );
    if (slept === "aborted") return false;
    delayMs = Math.min(delayMs * 2, options.maxDelayMs ?? WAIT_MAX_DELAY_MS);
  }
}

/**
 * Why a start-up check failed, when it was not the migrations themselves:
 * - "unusable": PostgreSQL answered and refused DATABASE_URL in a way only a configuration change fixes — login
 *   refused (28000: no such role; 28P01: wrong password), no such database (3D000), or a password the server asks for
 *   and the URL lacks (the pg client's own SASL error, no SQLSTATE). Waiting or starting anyway would fail every job.
 * - "unreadable": connected, but the role may not read `_prisma_migrations` (42501), as a least-privilege role for the
 *   dashboard may not: the check cannot be made, the database itself is usable.
 * - "unreachable": anything else — no answer, a timeout, PostgreSQL starting up (57P03) or out of connections (53300).
 */
export function checkFailure(error: unknown): "unusable" | "unreadable" | "unreachable" {
  const sqlstate = (error as { code?: unknown } | null)?.code;
  if (sqlstate === "28000" || sqlstate === "28P01" || sqlstate === "3D000") return "unusable";
  if (sqlstate === "42501") return "unreadable";
  if (error instanceof Error && /client password must be a string/.test(error.message)) return "unusable";
  return "unreachable";
}

function exitUnusable(error: unknown, log: StartupLogger, url: string): never {
  const message = error instanceof Error ? error.message : String(error);
  const sqlstate = (error as { code?: unknown } | null)?.code;
  // No database yet is what a first deployment meets before migrating: the command that creates it, as db:migrate's
  // and db:prune's own message says. Any other refusal is the URL's user or password.
  const what =
    sqlstate === "3D000"
      ? `PostgreSQL has no database "${parseDatabaseUrl(url).database}" (DATABASE_URL's): run \`npm run db:migrate\` to create it (with Docker Compose, \`docker compose run --rm migrate\`), or fix the name in DATABASE_URL`
      : `PostgreSQL refused DATABASE_URL (${message}): fix its user, password or database name`;
  log.fatal({ code: "DB_UNUSABLE", sqlstate, err: message }, what);
  process.exit(78);
}

function exitNotMigrated(error: MigrationStateError, log: StartupLogger): never {
  const { pending, failed, modified } = error.state;
  log.fatal({ code: error.code, schema: error.schema, pending, failed, modified }, error.message);
  process.exit(78);
}

/** Another application's history: only DATABASE_URL can fix it. */
function exitForeign(error: ForeignMigrationsError, log: StartupLogger): never {
  log.fatal({ code: error.code, schema: error.schema }, error.message);
  process.exit(78);
}

/** The migration files themselves are at fault: a person must fix this machine's checkout, waiting would not. */
function exitFilesUnreadable(error: MigrationFilesError, log: StartupLogger): never {
  log.fatal({ code: error.code, path: error.path }, error.message);
  process.exit(78);
}
