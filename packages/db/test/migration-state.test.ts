import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  checkFailure,
  createDb,
  MIGRATIONS_DIR,
  MigrationFilesError,
  MigrationStateError,
  migrate,
  readMigrations,
  type StartupLogger,
  verifyMigrations,
  verifyMigrationsOrExit,
  waitForMigrationsOrExit,
} from "@wpn/db";
import { TEST_DATABASE_BASE_URL } from "@wpn/testing";
import { describe, expect, it, vi } from "vitest";
import { freshSchemas } from "./support/fresh-schemas.ts";

const freshUrl = freshSchemas("mst");

const committed = readMigrations().map((m) => m.name);
const last = committed.at(-1) as string;

/** The committed migrations but the last: a database migrated by the previous release. */
function previousRelease(): string {
  const dir = mkdtempSync(join(tmpdir(), "wpn-previous-"));
  for (const name of committed.slice(0, -1)) cpSync(join(MIGRATIONS_DIR, name), join(dir, name), { recursive: true });
  return dir;
}

async function stateError(url: string): Promise<MigrationStateError> {
  const error = await verifyMigrations(url).then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof MigrationStateError)) throw new Error(`expected a MigrationStateError, got ${String(error)}`);
  return error;
}

async function sql(url: string, text: string, params: unknown[] = []): Promise<void> {
  const db = createDb({ url });
  try {
    await db.pool.query(text, params);
  } finally {
    await db.close();
  }
}

describe("verifyMigrations (what an app checks at start)", () => {
  it("an empty schema: every committed migration is named as not applied, with the command to run", async () => {
    const url = freshUrl();
    const error = await stateError(url);
    expect(error.code).toBe("DB_NOT_MIGRATED");
    expect(error.state.pending).toEqual(committed);
    expect(error.message).toContain(`database schema "${error.schema}" is not at the committed migrations`);
    expect(error.message).toContain(
      `${committed.length} migrations (${committed[0]} … ${last}) not applied: run \`npm run db:migrate\``,
    );
  });

  it("a schema migrated by the previous release: names the one migration missing", async () => {
    const url = freshUrl();
    const dir = previousRelease();
    try {
      await migrate(url, dir);
    } finally {
      rmSync(dir, { recursive: true });
    }
    const error = await stateError(url);
    expect(error.state).toEqual({ applied: committed.slice(0, -1), pending: [last], failed: [], modified: [] });
    expect(error.message).toContain(`migration ${last} not applied: run \`npm run db:migrate\``);
  });

  it("a migration prisma migrate deploy left failed, and an applied file edited since: both named", async () => {
    const url = freshUrl();
    await migrate(url);
    await sql(url, `UPDATE "_prisma_migrations" SET finished_at = NULL WHERE migration_name = $1`, [last]);
    await sql(url, `UPDATE "_prisma_migrations" SET checksum = 'edited' WHERE migration_name = $1`, [committed[0]]);
    const error = await stateError(url);
    expect(error.state.failed).toEqual([last]);
    expect(error.state.modified).toEqual([committed[0]]);
    expect(error.message).toContain(`migration ${last} failed earlier`);
    expect(error.message).toContain(`migration ${committed[0]} modified after it was applied`);
  });

  it("a migrated schema passes, also when a newer release recorded a migration this one does not have", async () => {
    const url = freshUrl();
    await migrate(url);
    await sql(
      url,
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
       VALUES ('newer', 'x', now(), '29991231000000_from_a_newer_release', 1)`,
    );
    await expect(verifyMigrations(url)).resolves.toBeUndefined();
  });

  it("another application's migration history (its rows, or a table without Prisma's columns): MIGRATIONS_FOREIGN, and db:migrate applies nothing", async () => {
    // Before: another Prisma project's database read as "37 migrations not applied: run npm run db:migrate", which then
    // created this project's tables beside that project's; a _prisma_migrations of another tool failed as
    // "42703: column "migration_name" does not exist" (db:migrate), and the apps took that for an unreachable database.
    const foreignRows = freshUrl();
    const schemaOf = (url: string) => new URL(url).searchParams.get("schema") as string;
    await sql(foreignRows, `CREATE SCHEMA "${schemaOf(foreignRows)}"`);
    await sql(
      foreignRows,
      `CREATE TABLE "${schemaOf(foreignRows)}"."_prisma_migrations" (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL,
         finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,
         started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count integer NOT NULL DEFAULT 0)`,
    );
    await sql(
      foreignRows,
      `INSERT INTO "${schemaOf(foreignRows)}"."_prisma_migrations" (id, checksum, finished_at, migration_name) VALUES
         ('a', 'x', now(), '20240101000000_blog_init'), ('b', 'y', now(), '20240201000000_blog_comments')`,
    );
    const foreignTable = freshUrl();
    await sql(foreignTable, `CREATE SCHEMA "${schemaOf(foreignTable)}"`);
    await sql(
      foreignTable,
      `CREATE TABLE "${schemaOf(foreignTable)}"."_prisma_migrations" (id int PRIMARY KEY, name text)`,
    );
    for (const url of [foreignRows, foreignTable]) {
      const checked = await verifyMigrations(url).then(
        () => null,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(checked?.code, String(checked?.message)).toBe("MIGRATIONS_FOREIGN");
      expect(checked?.message).toContain(`schema "${schemaOf(url)}" holds another application's migration history`);
      await expect(migrate(url)).rejects.toMatchObject({ code: "MIGRATIONS_FOREIGN" });
    }
    const { rows } = await (async () => {
      const db = createDb({ url: foreignRows });
      try {
        return await db.pool.query(`SELECT count(*)::int AS n FROM "${schemaOf(foreignRows)}"."_prisma_migrations"`);
      } finally {
        await db.close();
      }
    })();
    expect(rows[0]).toEqual({ n: 2 });
  });

  it("a schema holding another application's tables and no _prisma_migrations: MIGRATIONS_FOREIGN, as Prisma's P3005; db:migrate creates nothing", async () => {
    const schemaOf = (url: string) => new URL(url).searchParams.get("schema") as string;
    const foreign = freshUrl();
    await sql(foreign, `CREATE SCHEMA "${schemaOf(foreign)}"`);
    await sql(foreign, `CREATE TABLE "${schemaOf(foreign)}".users (id int PRIMARY KEY, email text)`);
    const checked = await verifyMigrations(foreign).then(
      () => null,
      (e: unknown) => e as { code?: string; message?: string },
    );
    expect(checked?.code, String(checked?.message)).toBe("MIGRATIONS_FOREIGN");
    expect(checked?.message).toContain("users");
    await expect(migrate(foreign)).rejects.toMatchObject({ code: "MIGRATIONS_FOREIGN" });
    const db = createDb({ url: foreign });
    try {
      const { rows } = await db.pool.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        [schemaOf(foreign)],
      );
      expect(rows.map((r) => r.table_name)).toEqual(["users"]);
    } finally {
      await db.close();
    }
    // PostGIS's own tables do not make a schema another application's, for Prisma either.
    const postgis = freshUrl();
    await sql(postgis, `CREATE SCHEMA "${schemaOf(postgis)}"`);
    await sql(postgis, `CREATE TABLE "${schemaOf(postgis)}".spatial_ref_sys (srid int PRIMARY KEY)`);
    expect((await migrate(postgis)).applied).toEqual(committed);
  });

  it("a database that cannot be reached: the error as it comes, not a migration verdict", async () => {
    const error = await verifyMigrations("postgresql://postgres@127.0.0.1:1/nowhere", { connectTimeoutMs: 1_000 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(MigrationStateError);
  });
});

describe("checkFailure (why a start-up check could not be made)", () => {
  /** The error verifyMigrations throws for `url`. */
  async function failureOf(url: string): Promise<ReturnType<typeof checkFailure>> {
    const error = await verifyMigrations(url, { connectTimeoutMs: 2_000 }).then(
      () => null,
      (e: unknown) => e,
    );
    if (error === null) throw new Error("expected the check to fail");
    return checkFailure(error);
  }
  const base = new URL(TEST_DATABASE_BASE_URL);

  it("a database or role PostgreSQL does not know is unusable: only the configuration can fix it", async () => {
    expect(await failureOf(`postgresql://postgres@${base.host}/wpn_no_such_database`)).toBe("unusable");
    expect(await failureOf(`postgresql://wpn_no_such_role@${base.host}${base.pathname}`)).toBe("unusable");
  });

  it("no PostgreSQL listening is unreachable (checked again, or started on, as before)", async () => {
    expect(await failureOf("postgresql://postgres@127.0.0.1:1/wechatpay_notify")).toBe("unreachable");
  });

  it("a role that may not read the migrations is unreadable: the database itself answers", async () => {
    const url = freshUrl();
    await migrate(url);
    const role = `wpn_ro_${Math.random().toString(36).slice(2, 8)}`;
    await sql(TEST_DATABASE_BASE_URL, `CREATE ROLE ${role} LOGIN`);
    try {
      const asRole = new URL(url);
      asRole.username = role;
      expect(await failureOf(asRole.toString())).toBe("unreadable");
    } finally {
      await sql(TEST_DATABASE_BASE_URL, `DROP ROLE ${role}`);
    }
  });
});

describe("a migration folder without migration.sql (a branch switch, an aborted `migrate dev --create-only`)", () => {
  /** The committed migrations plus an empty folder after them. */
  function withHalfCreated(): { dir: string; folder: string } {
    const dir = mkdtempSync(join(tmpdir(), "wpn-half-created-"));
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const folder = join(dir, "29991231000000_half_created");
    mkdirSync(folder);
    return { dir, folder };
  }
  class Exited extends Error {
    constructor(readonly code: unknown) {
      super(`process.exit(${String(code)})`);
    }
  }
  /** What the start-up check logged, and how it ended: exit status (process.exit stubbed), or its answer. */
  async function startUpCheck(check: (log: StartupLogger) => Promise<unknown>) {
    const logged: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const log: StartupLogger = {
      fatal: (fields, message) => logged.push({ level: "fatal", fields: fields as Record<string, unknown>, message }),
      warn: (fields, message) => logged.push({ level: "warn", fields: fields as Record<string, unknown>, message }),
    };
    const exit = vi.spyOn(process, "exit").mockImplementation((code) => {
      throw new Exited(code);
    });
    try {
      const ended = await check(log).then(
        (answer) => ({ answer }),
        (error: unknown) => (error instanceof Exited ? { exit: error.code } : Promise.reject(error)),
      );
      return { ...ended, logged };
    } finally {
      exit.mockRestore();
    }
  }

  it("verifyMigrations says which folder and what to do, as Prisma's P3015 does", async () => {
    const { dir, folder } = withHalfCreated();
    try {
      const error = await verifyMigrations(freshUrl(), { dir }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(MigrationFilesError);
      expect((error as MigrationFilesError).code).toBe("MIGRATION_FILE_MISSING");
      expect((error as MigrationFilesError).path).toBe(join(folder, "migration.sql"));
      expect((error as Error).message).toContain(`migration folder ${folder} has no migration.sql`);
      expect((error as Error).message).toContain("restore its migration.sql or delete the folder");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the worker's check stops the process (exit 78) instead of waiting for PostgreSQL for ever", async () => {
    const { dir, folder } = withHalfCreated();
    const url = freshUrl();
    await migrate(url);
    // Bounded here: before, the wait went on (MIGRATIONS_UNCHECKED, "waiting for PostgreSQL") until aborted.
    const signal = AbortSignal.timeout(3_000);
    try {
      const ended = await startUpCheck((log) => waitForMigrationsOrExit(url, log, { dir, signal, initialDelayMs: 50 }));
      expect(ended.logged.map((l) => [l.level, l.fields.code])).toEqual([["fatal", "MIGRATION_FILE_MISSING"]]);
      expect(ended.logged[0]?.fields.path).toBe(join(folder, "migration.sql"));
      expect(ended).toMatchObject({ exit: 78 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the ingress's and dashboard's check stops the process (exit 78) instead of starting unchecked", async () => {
    const { dir } = withHalfCreated();
    const url = freshUrl();
    await migrate(url);
    try {
      const ended = await startUpCheck((log) => verifyMigrationsOrExit(url, log, { dir }));
      expect(ended.logged.map((l) => [l.level, l.fields.code])).toEqual([["fatal", "MIGRATION_FILE_MISSING"]]);
      expect(ended).toMatchObject({ exit: 78 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("migrate refuses before applying anything, naming the folder", async () => {
    const { dir, folder } = withHalfCreated();
    const url = freshUrl();
    try {
      await expect(migrate(url, dir)).rejects.toThrow(`migration folder ${folder} has no migration.sql`);
      await expect(stateError(url)).resolves.toMatchObject({ state: { applied: [], pending: committed } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
