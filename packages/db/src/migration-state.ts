import type pg from "pg";
import { quoteIdent } from "./database-url.ts";
import type { MigrationFile } from "./migration-files.ts";

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
   * Recorded without `finished_at`: a migration `prisma migrate deploy` left failed (this project's migrator records
   * nothing for a failure). Includes such rows of migrations no longer on disk.
   */
  failed: string[];
  /** Recorded as finished with another checksum: the file was edited after it was applied. */
  modified: string[];
}

/**
 * Compares the files with the recorded rows as `prisma migrate deploy` does: rows marked rolled back do not count,
 * and a row that finished wins over an unfinished one of the same name (`prisma migrate resolve --applied`). Rows
 * of migrations not on disk (a database migrated by a newer release) are ignored unless they failed.
 */
export function compareMigrations(files: readonly MigrationFile[], rows: readonly RecordedMigration[]): MigrationState {
  const recorded = new Map<string, RecordedMigration>();
  for (const row of rows) {
    if (row.rolled_back_at !== null) continue;
    const seen = recorded.get(row.migration_name);
    if (!seen || seen.finished_at === null) recorded.set(row.migration_name, row);
  }
  const state: MigrationState = { applied: [], pending: [], failed: [], modified: [] };
  state.failed = [...recorded.values()]
    .filter((row) => row.finished_at === null)
    .map((row) => row.migration_name)
    .sort();
  for (const file of files) {
    const row = recorded.get(file.name);
    if (!row) state.pending.push(file.name);
    else if (row.finished_at === null) continue;
    else if (!file.acceptedChecksums.includes(row.checksum)) state.modified.push(file.name);
    else state.applied.push(file.name);
  }
  return state;
}

/** Reads `_prisma_migrations` of `schema` (no rows when the table does not exist). */
export async function readRecordedMigrations(client: pg.ClientBase, schema: string): Promise<RecordedMigration[]> {
  const table = `${quoteIdent(schema)}."_prisma_migrations"`;
  const exists = await client.query<{ found: boolean }>("SELECT to_regclass($1) IS NOT NULL AS found", [table]);
  if (!exists.rows[0]?.found) return [];
  const { rows } = await client.query<RecordedMigration>(
    `SELECT migration_name, checksum, finished_at, rolled_back_at FROM ${table} ORDER BY started_at`,
  );
  return rows;
}
