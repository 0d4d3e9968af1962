import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** prisma/migrations at the repository root (the Docker image copies the whole repository: the apps read it too). */
export const MIGRATIONS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../prisma/migrations");

export interface MigrationFile {
  name: string;
  sql: string;
  /**
   * sha256 hex of the file's text as read (UTF-8 decoded, then encoded again): what Prisma stores in `checksum`.
   * The file's bytes themselves for a valid UTF-8 file; a byte that is not UTF-8 (a comment saved as GBK) counts as
   * U+FFFD, as in the text Prisma reads, hashes and sends to PostgreSQL — and so do we.
   */
  checksum: string;
  /**
   * The checksums an applied copy of this file may have been recorded with, as Prisma's schema engine matches them
   * (checksum.rs, `script_matches_checksum`): the digests of the text as read, with every CRLF made LF, and with every
   * LF made CRLF (a checkout on Windows converts them; a CRLF already there becomes CR CR LF, exactly as Prisma does) —
   * each in hex, and in the unpadded hex an old schema engine wrote (each byte without its leading zero:
   * prisma-engines#1887). Prisma compares a recorded checksum of other than 64 characters with the unpadded form
   * only; including it here is the same rule, since a checksum of 64 characters that matches an unpadded form
   * matches the padded one too. So a database migrated from one checkout, or by an old Prisma, still starts.
   */
  acceptedChecksums: readonly string[];
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** What Prisma recorded for a checksum before prisma-engines#1887: each byte in hex without its leading zero. */
function unpaddedSha256(text: string): string {
  return [...createHash("sha256").update(text).digest()].map((byte) => byte.toString(16)).join("");
}

/** Prisma's variants of a script's line endings (checksum.rs): as read, CRLF→LF, LF→CRLF (each on the text as read). */
function acceptedChecksumsOf(sql: string): string[] {
  const variants = [sql, sql.replaceAll("\r\n", "\n"), sql.replaceAll("\n", "\r\n")];
  return [...new Set(variants.flatMap((text) => [sha256(text), unpaddedSha256(text)]))];
}

/**
 * The migration files on this machine cannot be read: no database verdict can be given, and no wait fixes it (a
 * person must). `path` is the file or folder at fault.
 * - MIGRATION_FILE_MISSING: a migration folder without its migration.sql — left by a branch switch (git leaves a
 *   folder holding an ignored or untracked file) or an aborted `prisma migrate dev --create-only`. Nothing is applied
 *   or checked until the file is restored or the folder deleted: the folder may be a migration this checkout should
 *   have. Stricter than `prisma migrate deploy` (7.x), which reads a script only when it applies it: it reports P3015
 *   on reaching that migration, after applying those before it, and never for one already applied.
 * - MIGRATION_PROVIDER_MISMATCH: migration_lock.toml names a provider other than postgresql — a migration history
 *   written for another database. As `prisma migrate deploy` (P3019), none of it is applied or checked.
 * - MIGRATIONS_UNREADABLE: any other failure to read the folder or a file (permissions, a missing folder).
 */
export class MigrationFilesError extends Error {
  constructor(
    readonly code: "MIGRATION_FILE_MISSING" | "MIGRATION_PROVIDER_MISMATCH" | "MIGRATIONS_UNREADABLE",
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "MigrationFilesError";
  }
}

/** Reads `path`, or throws MigrationFilesError naming it. */
function readOrThrow<T>(path: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw new MigrationFilesError(
      "MIGRATIONS_UNREADABLE",
      path,
      `cannot read the migrations at ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** The provider of every migration this project applies (prisma/schema.prisma's datasource). */
const PROVIDER = "postgresql";

/**
 * Throws MigrationFilesError when `dir`'s migration_lock.toml names another provider. Read as Prisma reads it: the
 * first line (CRLF or LF) starting with `provider`, without `provider = ` and the quotes (no such line: refused).
 * No lock file: nothing to check, as for Prisma.
 */
function checkProvider(dir: string): void {
  const lock = join(dir, "migration_lock.toml");
  if (!existsSync(lock)) return;
  const line = readOrThrow(lock, () => readFileSync(lock, "utf8"))
    .split(/\r?\n/)
    .find((l) => l.startsWith("provider"));
  const provider = line?.replace(/^provider = /, "").replace(/^"+|"+$/g, "");
  if (provider === PROVIDER) return;
  throw new MigrationFilesError(
    "MIGRATION_PROVIDER_MISMATCH",
    lock,
    `${lock} ${provider === undefined ? "names no provider" : `names provider "${provider}"`}, not "${PROVIDER}": these migrations were written for another database; nothing is applied or checked (as \`prisma migrate deploy\`, P3019)`,
  );
}

/**
 * The order `prisma migrate deploy` applies migrations in: its CLI sorts the folder names with `a.localeCompare(b)`
 * (Prisma 7's listMigrations) and the schema engine applies them as listed. That is collation order in the process's
 * default locale (LANG, LC_ALL), not code-unit order: `…_apple` before `…_Zebra`, `20261211_x` before `2026121112_y`
 * — and in Danish `aa` after `z`. Same Node, same locale, same order as Prisma on this machine; the committed names
 * (14-digit timestamp, then lower case and `_`) sort alike in every locale (test/migrate-prisma-semantics.test.ts).
 */
export function prismaOrder(a: string, b: string): number {
  return a.localeCompare(b);
}

/**
 * Every migration of `dir`, in Prisma's order (`prismaOrder`). Throws MigrationFilesError when one cannot be read, or
 * when the folder's migration_lock.toml names another provider.
 */
export function readMigrations(dir: string = MIGRATIONS_DIR): MigrationFile[] {
  checkProvider(dir);
  return readOrThrow(dir, () => readdirSync(dir, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort(prismaOrder)
    .map((name) => {
      const folder = join(dir, name);
      const file = join(folder, "migration.sql");
      if (!existsSync(file)) {
        throw new MigrationFilesError(
          "MIGRATION_FILE_MISSING",
          file,
          `migration folder ${folder} has no migration.sql (left by a branch switch or an aborted \`prisma migrate dev --create-only\`?): restore its migration.sql or delete the folder; until then no migration is applied or checked (Prisma's P3015)`,
        );
      }
      const sql = readOrThrow(file, () => readFileSync(file, "utf8"));
      return { name, sql, checksum: sha256(sql), acceptedChecksums: acceptedChecksumsOf(sql) };
    });
}

/**
 * How a migration is applied:
 * - `transaction`: the whole file in one transaction, recorded in the same transaction (all or nothing);
 * - `concurrent-index`: a file whose only statement (comments aside) is `CREATE [UNIQUE] INDEX CONCURRENTLY`, which
 *   PostgreSQL refuses inside a transaction block. It is sent on its own, as Prisma sends such a file, so the
 *   table takes writes while the index is built; `index` is the index's name as PostgreSQL stores it.
 */
export type MigrationPlan = { kind: "transaction" } | { kind: "concurrent-index"; index: string };

const CONCURRENT_INDEX = /^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\b/i;
/** The form a concurrent index migration must take: IF NOT EXISTS and a name, so that a repeated run finds it. */
const CONCURRENT_INDEX_FORM =
  /^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s+ON\b/i;

/**
 * A migration's own transaction control, which would end the transaction the migration runs in: PostgreSQL commits
 * what came before a COMMIT (END), and runs what follows it outside the migration's transaction and lock_timeout,
 * unrecorded — a failure after it leaves the migration half applied, and every later run fails on what it created.
 * ROLLBACK TO (a savepoint) is not one of them. A statement starting with END is one only where no SQL-standard
 * function body (BEGIN ATOMIC … END) can have been cut at its inner semicolons by `splitStatements`.
 */
const TRANSACTION_CONTROL = /^(?:BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK(?!\s+TO\b)|ABORT|PREPARE\s+TRANSACTION)\b/i;
const END_STATEMENT = /^END\b/i;
const BEGIN_ATOMIC = /\bBEGIN\s+ATOMIC\b/i;

/** A migration file this runner refuses to apply as it is; nothing of the run is applied. */
export class MigrationScriptError extends Error {
  readonly code = "MIGRATION_TRANSACTION_CONTROL";
  constructor(
    readonly migration: string,
    statement: string,
  ) {
    super(
      `migration ${migration} controls its own transaction (${statement.split(/\s+/).slice(0, 2).join(" ")}): every migration already runs in a transaction of its own, recorded in it, so that it applies completely or not at all; remove its BEGIN, COMMIT, ROLLBACK and the like. Nothing was applied`,
    );
    this.name = "MigrationScriptError";
  }
}

/**
 * Throws MigrationScriptError when the file controls its own transaction, and an Error when it is a concurrent index
 * migration that does not have the form a safe re-run needs.
 */
export function planMigration(migration: MigrationFile): MigrationPlan {
  const statements = splitStatements(migration.sql);
  const atomicBodies = BEGIN_ATOMIC.test(migration.sql);
  const control = statements.find((s) => TRANSACTION_CONTROL.test(s) || (!atomicBodies && END_STATEMENT.test(s)));
  if (control !== undefined) throw new MigrationScriptError(migration.name, control);
  const [only] = statements;
  if (statements.length !== 1 || only === undefined || !CONCURRENT_INDEX.test(only)) return { kind: "transaction" };
  const form = CONCURRENT_INDEX_FORM.exec(only);
  if (!form?.[1]) {
    throw new Error(
      `migration ${migration.name}: write CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS "<name>" ON …, so that a run interrupted after the build can be repeated`,
    );
  }
  const name = form[1];
  // PostgreSQL folds an unquoted identifier to lower case.
  const index = name.startsWith('"') ? name.slice(1, -1).replaceAll('""', '"') : name.toLowerCase();
  return { kind: "concurrent-index", index };
}

/**
 * The statements of a SQL script, comments removed, trimmed, empty ones dropped. Knows PostgreSQL's lexical
 * forms that may hold a `;` or a comment marker without ending a statement: '…' and E'…' strings, "…" identifiers,
 * $tag$…$tag$ bodies, -- and (nested) block comments.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let current = "";
  let i = 0;
  const flush = () => {
    const statement = current.trim();
    if (statement !== "") statements.push(statement);
    current = "";
  };
  while (i < sql.length) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      i = end === -1 ? sql.length : end;
      current += " ";
    } else if (c === "/" && next === "*") {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql.startsWith("/*", i)) {
          depth++;
          i += 2;
        } else if (sql.startsWith("*/", i)) {
          depth--;
          i += 2;
        } else {
          i++;
        }
      }
      current += " ";
    } else if (c === "'" || c === '"') {
      const escapes = c === "'" && /[Ee]/.test(sql[i - 1] ?? "") && !/[A-Za-z0-9_$]/.test(sql[i - 2] ?? "");
      let j = i + 1;
      for (;;) {
        if (j >= sql.length) break;
        if (escapes && sql[j] === "\\") j += 2;
        else if (sql[j] === c && sql[j + 1] === c) j += 2;
        else if (sql[j] === c) break;
        else j++;
      }
      current += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === "$" && !/[A-Za-z0-9_$]/.test(sql[i - 1] ?? "")) {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        const stop = end === -1 ? sql.length : end + tag[0].length;
        current += sql.slice(i, stop);
        i = stop;
      } else {
        current += c;
        i++;
      }
    } else if (c === ";") {
      flush();
      i++;
    } else {
      current += c;
      i++;
    }
  }
  flush();
  return statements;
}
