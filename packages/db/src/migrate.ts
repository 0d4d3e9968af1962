import { createHash, randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { parseDatabaseUrl, quoteIdent } from "./database-url.ts";

/** prisma/migrations at the repository root. */
export const MIGRATIONS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../prisma/migrations");

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

/** Arbitrary constant: every process that migrates takes this advisory lock, so concurrent starts apply each migration once. */
const MIGRATION_LOCK_KEY = 72_707_369;

export interface MigrationFile {
  name: string;
  sql: string;
  /** sha256 hex of the file bytes: what Prisma stores in `checksum`. */
  checksum: string;
  /**
   * The checksums an applied copy of this file may have been recorded with: its own, and those of the same
   * text with LF or CRLF line endings (a checkout on Windows converts them). Prisma accepts these variants
   * too, so a database migrated from one checkout still starts from another.
   */
  acceptedChecksums: readonly string[];
}

const sha256 = (text: Buffer | string) => createHash("sha256").update(text).digest("hex");

export function readMigrations(dir: string = MIGRATIONS_DIR): MigrationFile[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort()
    .map((name) => {
      const bytes = readFileSync(join(dir, name, "migration.sql"));
      const sql = bytes.toString("utf8");
      const lf = sql.replace(/\r\n/g, "\n");
      const checksum = sha256(bytes);
      return { name, sql, checksum, acceptedChecksums: [checksum, sha256(lf), sha256(lf.replace(/\n/g, "\r\n"))] };
    });
}

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
 * Applies every migration of `dir` not yet recorded in `_prisma_migrations`, each in its own transaction, and
 * records it the way `prisma migrate deploy` does. Refuses to go on when an applied migration's file changed
 * (checksum mismatch) or a previous attempt failed half-way, as Prisma does.
 */
export async function migrate(url: string, dir: string = MIGRATIONS_DIR): Promise<MigrateResult> {
  const target = parseDatabaseUrl(url);
  const client = new pg.Client({ connectionString: target.connectionString });
  await client.connect();
  try {
    // The lock is taken before anything else: even CREATE SCHEMA IF NOT EXISTS races between sessions.
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(target.schema)}`);
      await client.query(`SET search_path TO ${quoteIdent(target.schema)}`);
      await client.query(MIGRATIONS_TABLE);
      const rows = await client.query<{
        migration_name: string;
        checksum: string;
        finished_at: Date | null;
        rolled_back_at: Date | null;
      }>(`SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations"`);
      const recorded = new Map(rows.rows.filter((r) => r.rolled_back_at === null).map((r) => [r.migration_name, r]));
      // As Prisma (P3009): a failed migration anywhere in the history stops everything, before anything runs.
      const failed = [...recorded.values()].filter((r) => r.finished_at === null).map((r) => r.migration_name);
      if (failed.length > 0) {
        throw new Error(`migration ${failed.join(", ")} failed earlier and needs manual resolution`);
      }
      const result: MigrateResult = { applied: [], alreadyApplied: [] };
      for (const migration of readMigrations(dir)) {
        const row = recorded.get(migration.name);
        if (row) {
          if (!migration.acceptedChecksums.includes(row.checksum)) {
            throw new Error(`migration ${migration.name} was modified after it was applied (checksum mismatch)`);
          }
          result.alreadyApplied.push(migration.name);
          continue;
        }
        await applyOne(client, migration);
        result.applied.push(migration.name);
      }
      return result;
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
    }
  } finally {
    await client.end();
  }
}

async function applyOne(client: pg.Client, migration: MigrationFile): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query(migration.sql);
    await client.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
       VALUES ($1, $2, now(), $3, now(), 1)`,
      [randomUUID(), migration.checksum, migration.name],
    );
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK");
    throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
  }
}
