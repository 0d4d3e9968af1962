import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createDb,
  ensureDatabase,
  type MigrationFilesError,
  migrate,
  planMigration,
  readMigrations,
  splitStatements,
} from "@wpn/db";
import { TEST_DATABASE_BASE_URL } from "@wpn/testing";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { freshSchemas } from "./support/fresh-schemas.ts";

const freshUrl = freshSchemas("mig");
const freshCapitalsUrl = freshSchemas("Mig_Case");

function migrationsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "wpn-migrations-"));
  for (const [name, sql] of Object.entries(files)) {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, "migration.sql"), sql);
  }
  return dir;
}

describe("migrate", () => {
  it("applies the committed migrations once and records them as Prisma does", async () => {
    const url = freshUrl();
    const first = await migrate(url);
    expect(first.applied).toEqual(readMigrations().map((m) => m.name));
    const second = await migrate(url);
    expect(second).toEqual({ applied: [], alreadyApplied: first.applied });

    const db = createDb({ url });
    try {
      const { rows } = await db.pool.query(
        `SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name`,
      );
      expect(rows.map((r) => r.migration_name)).toEqual(first.applied);
      for (const [i, row] of rows.entries()) {
        expect(row.checksum).toBe(readMigrations()[i]?.checksum);
        expect(row.checksum).toMatch(/^[0-9a-f]{64}$/);
        expect(row.finished_at).toBeInstanceOf(Date);
        expect(row.applied_steps_count).toBe(1);
        expect(row.rolled_back_at).toBeNull();
      }
    } finally {
      await db.close();
    }
  });

  it("applies each migration exactly once when several processes start together", async () => {
    const url = freshUrl();
    const dir = migrationsDir({
      "001_a": `CREATE TABLE "Counter" (n int NOT NULL); INSERT INTO "Counter" VALUES (1);`,
      "002_b": `UPDATE "Counter" SET n = n + 1;`,
    });
    const results = await Promise.all([migrate(url, dir), migrate(url, dir), migrate(url, dir)]);
    expect(results.flatMap((r) => r.applied).sort()).toEqual(["001_a", "002_b"]);
    const db = createDb({ url });
    try {
      expect((await db.pool.query(`SELECT n FROM "Counter"`)).rows).toEqual([{ n: 2 }]);
    } finally {
      await db.close();
    }
  });

  it("refuses to continue when an applied migration was edited", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_a": `CREATE TABLE "T" (id int);` }));
    await expect(migrate(url, migrationsDir({ "001_a": `CREATE TABLE "T" (id bigint);` }))).rejects.toThrow(
      /migration 001_a modified after it was applied/,
    );
  });

  it("accepts an applied migration whose file now has other line endings (a Windows checkout), nothing else", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_a": `CREATE TABLE "T" (id int);\nINSERT INTO "T" VALUES (1);\n` }));
    const crlf = migrationsDir({ "001_a": `CREATE TABLE "T" (id int);\r\nINSERT INTO "T" VALUES (1);\r\n` });
    expect(await migrate(url, crlf)).toEqual({ applied: [], alreadyApplied: ["001_a"] });
    await expect(
      migrate(url, migrationsDir({ "001_a": `CREATE TABLE "T" (id int);\r\nINSERT INTO "T" VALUES (2);\r\n` })),
    ).rejects.toThrow(/migration 001_a modified after it was applied/);
  });

  it("refuses before applying anything when any recorded migration failed, even one no longer on disk", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_a": `CREATE TABLE "T" (id int);` }));
    const db = createDb({ url });
    try {
      await db.pool.query(
        `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count)
         VALUES ('f', 'x', '000_gone', now(), 0)`,
      );
      const dir = migrationsDir({ "001_a": `CREATE TABLE "T" (id int);`, "002_b": `CREATE TABLE "U" (id int);` });
      await expect(migrate(url, dir)).rejects.toThrow(/000_gone failed earlier/);
      const tables = await db.pool.query(
        `SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'U'`,
        [db.target.schema],
      );
      expect(tables.rowCount).toBe(0);
    } finally {
      await db.close();
    }
  });

  it("creates a missing database once when several processes start together", async () => {
    const name = `wpn_mig_${Math.random().toString(36).slice(2, 10)}`;
    const url = new URL(TEST_DATABASE_BASE_URL);
    url.pathname = `/${name}`;
    try {
      const created = await Promise.all(Array.from({ length: 8 }, () => ensureDatabase(url.toString())));
      expect(created.filter(Boolean).length).toBeGreaterThanOrEqual(1);
    } finally {
      const client = new pg.Client({ connectionString: TEST_DATABASE_BASE_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}"`);
      await client.end();
    }
  });

  it("a schema name with capitals: raw SQL finds the same tables Prisma does (search_path quoted)", async () => {
    const url = freshCapitalsUrl();
    const schema = new URL(url).searchParams.get("schema");
    await migrate(url);
    const db = createDb({ url });
    try {
      const { rows } = await db.pool.query("SELECT current_schema() AS path, to_regproc('wpn_apply_payments') AS fn");
      expect(rows[0]).toEqual({ path: schema, fn: "wpn_apply_payments" });
      await db.prisma.sku.create({ data: { id: "S1", name: "one", stock: 1 } });
      expect((await db.pool.query(`SELECT id FROM "Sku"`)).rows).toEqual([{ id: "S1" }]);
    } finally {
      await db.close();
    }
  });

  it("migrates a database its role may connect to while the maintenance database is closed to it", async () => {
    const name = `wpn_mig_own_${Math.random().toString(36).slice(2, 10)}`;
    const role = `wpn_mig_role_${Math.random().toString(36).slice(2, 10)}`;
    const admin = new pg.Client({ connectionString: TEST_DATABASE_BASE_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE "${role}" LOGIN`);
      await admin.query(`CREATE DATABASE "${name}" OWNER "${role}"`);
      // The role may not connect to `postgres` (CONNECT is PUBLIC's by default: a role of its own is refused here).
      await admin.query(`REVOKE CONNECT ON DATABASE postgres FROM PUBLIC`);
      await admin.query(`GRANT CONNECT ON DATABASE postgres TO postgres`);
      const url = new URL(TEST_DATABASE_BASE_URL);
      url.username = role;
      url.pathname = `/${name}`;
      expect(await ensureDatabase(url.toString())).toBe(false);
      expect((await migrate(url.toString())).applied.length).toBe(readMigrations().length);
    } finally {
      await admin.query(`GRANT CONNECT ON DATABASE postgres TO PUBLIC`);
      await admin.query(`DROP DATABASE IF EXISTS "${name}"`);
      await admin.query(`DROP ROLE IF EXISTS "${role}"`);
      await admin.end();
    }
  });

  // A least-privilege migrator: owns its schema, may not create schemas in the database (no CREATE on it). Prisma
  // creates the schema only when pg_namespace lacks it; CREATE SCHEMA IF NOT EXISTS checks that privilege first.
  it("migrates a schema its role owns without CREATE on the database, as prisma migrate deploy does", async () => {
    const url = freshUrl();
    const schema = new URL(url).searchParams.get("schema") as string;
    const role = `wpn_mig_owner_${Math.random().toString(36).slice(2, 10)}`;
    const admin = new pg.Client({ connectionString: TEST_DATABASE_BASE_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE "${role}" LOGIN`);
      await admin.query(`CREATE SCHEMA "${schema}" AUTHORIZATION "${role}"`);
      const own = new URL(url);
      own.username = role;
      const dir = migrationsDir({ "001_a": `CREATE TABLE "T" (id int);` });
      expect(await migrate(own.toString(), dir)).toEqual({ applied: ["001_a"], alreadyApplied: [] });
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.query(`DROP ROLE IF EXISTS "${role}"`);
      await admin.end();
    }
  });

  // As Prisma's record: started_at when the migration starts, finished_at when it has finished.
  it("records when each migration started and when it finished, also a concurrent index build", async () => {
    const url = freshUrl();
    const dir = migrationsDir({
      "001_slow": `CREATE TABLE "T" (id serial PRIMARY KEY, k text); INSERT INTO "T" (k) VALUES ('a');
        -- Declared immutable, as an index expression must be: sleeps 0.3 s per row indexed.
        CREATE FUNCTION slow_key(k text) RETURNS text IMMUTABLE LANGUAGE plpgsql
          AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN k; END $$;
        SELECT pg_sleep(0.3);`,
      "002_index": `CREATE INDEX CONCURRENTLY IF NOT EXISTS "T_k_idx" ON "T" (slow_key(k));`,
    });
    await migrate(url, dir);
    const db = createDb({ url });
    try {
      const { rows } = await db.pool.query<{ migration_name: string; ms: number }>(
        `SELECT migration_name, extract(epoch FROM finished_at - started_at) * 1000 AS ms
         FROM "_prisma_migrations" ORDER BY migration_name`,
      );
      expect(rows.map((r) => r.migration_name)).toEqual(["001_slow", "002_index"]);
      for (const row of rows) expect(Number(row.ms)).toBeGreaterThanOrEqual(300);
    } finally {
      await db.close();
    }
  });

  // migration_lock.toml names the provider the history was written for; `prisma migrate deploy` refuses another (P3019).
  it("refuses migrations whose migration_lock.toml names another provider, before applying anything", async () => {
    const url = freshUrl();
    const dir = migrationsDir({ "001_a": `CREATE TABLE "T" (id int);` });
    writeFileSync(join(dir, "migration_lock.toml"), `# Please do not edit this file manually\nprovider = "mysql"\n`);
    const error = await migrate(url, dir).then(
      () => null,
      (e: unknown) => e as MigrationFilesError,
    );
    expect(error?.code).toBe("MIGRATION_PROVIDER_MISMATCH");
    expect(error?.message).toContain('migration_lock.toml names provider "mysql"');
    const db = createDb({ url });
    try {
      expect((await db.pool.query(`SELECT to_regclass('"T"') AS t`)).rows).toEqual([{ t: null }]);
    } finally {
      await db.close();
    }
    // The committed lock file, also as a Windows checkout writes it: accepted.
    writeFileSync(
      join(dir, "migration_lock.toml"),
      `# Please do not edit this file manually\r\nprovider = "postgresql"\r\n`,
    );
    expect((await migrate(url, dir)).applied).toEqual(["001_a"]);
  });

  it("rolls back a failing migration completely and records nothing", async () => {
    const url = freshUrl();
    const dir = migrationsDir({ "001_bad": `CREATE TABLE "Half" (id int); SELECT no_such_function();` });
    await expect(migrate(url, dir)).rejects.toThrow(/migration 001_bad failed/);
    const db = createDb({ url });
    try {
      const tables = await db.pool.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`,
        [db.target.schema],
      );
      expect(tables.rows.map((r) => r.table_name)).toEqual(["_prisma_migrations"]);
      expect((await db.pool.query(`SELECT count(*)::int AS n FROM "_prisma_migrations"`)).rows[0].n).toBe(0);
    } finally {
      await db.close();
    }
  });

  // The connection lost mid-migration (PostgreSQL restarted, a proxy or an administrator ending the backend): the
  // ROLLBACK and the lock's release then fail too, and their "Client was closed" used to be the error thrown, hiding
  // which migration failed and why.
  it("a connection lost mid-migration: the error names the migration and PostgreSQL's reason, the cleanup's failure added", async () => {
    const url = freshUrl();
    const dir = migrationsDir({
      "001_a": `CREATE TABLE "Kept" (id int);`,
      "002_lost": `CREATE TABLE "Lost" (id int); SELECT pg_terminate_backend(pg_backend_pid());`,
    });
    const error = await migrate(url, dir).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/^migration 002_lost failed: terminating connection due to administrator command/);
    expect(error?.message).toMatch(/\(then ROLLBACK failed too: .+\)/);
    expect((error?.cause as { code?: string } | undefined)?.code).toBe("57P01");
    expect(await recorded(url)).toEqual(["001_a"]);
    // Nothing of the lost transaction stayed, and the lock went with the session: a new run applies it.
    const again = await migrate(
      url,
      migrationsDir({ "001_a": `CREATE TABLE "Kept" (id int);`, "002_lost": "SELECT 1;" }),
    );
    expect(again.applied).toEqual(["002_lost"]);
  });
});

/** Each of a migration's indexes in `schema`: name → valid (PostgreSQL's indisvalid). */
async function indexes(url: string): Promise<Record<string, boolean>> {
  const db = createDb({ url });
  try {
    const { rows } = await db.pool.query<{ name: string; valid: boolean }>(
      `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND NOT i.indisprimary`,
      [db.target.schema],
    );
    return Object.fromEntries(rows.map((r) => [r.name, r.valid]));
  } finally {
    await db.close();
  }
}

async function recorded(url: string): Promise<string[]> {
  const db = createDb({ url });
  try {
    const { rows } = await db.pool.query(
      `SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY migration_name`,
    );
    return rows.map((r) => r.migration_name);
  } finally {
    await db.close();
  }
}

const TABLE = `CREATE TABLE "T" (id serial PRIMARY KEY, k text);`;
const CONCURRENT = `-- comments; even with a semicolon, are not statements
/* nor is /* a nested */ block comment; */
CREATE INDEX CONCURRENTLY IF NOT EXISTS "T_k_idx" ON "T" (k);
`;

describe("migrate: CREATE INDEX CONCURRENTLY", () => {
  it("runs a migration whose one statement is CREATE INDEX CONCURRENTLY outside a transaction: the table takes writes during the build", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_t": TABLE }));
    // Statements of this pool are cancelled after 2 s: an INSERT blocked by the build fails instead of waiting.
    const db = createDb({ url, queryTimeoutMs: 2_000 });
    // A transaction that wrote to the table and is still open: an index build waits for it to end (a plain
    // CREATE INDEX for its ShareLock, a concurrent one before its first scan).
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query(`INSERT INTO "T" (k) VALUES ('held')`);
      const migrating = migrate(url, migrationsDir({ "001_t": TABLE, "002_idx": CONCURRENT }));
      const failedEarly = migrating.then(
        () => "done",
        (error: Error) => error.message,
      );
      for (;;) {
        const { rows } = await db.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%CREATE INDEX CONCURRENTLY%'`,
        );
        if (rows.length > 0) break;
        const early = await Promise.race([failedEarly, new Promise((r) => setTimeout(() => r(null), 20))]);
        if (early !== null) throw new Error(`the migration did not wait for the open transaction: ${early}`);
      }
      // While the build waits, another session still writes to the table (a plain CREATE INDEX would queue it).
      await db.pool.query(`INSERT INTO "T" (k) VALUES ('during the build')`);
      await holder.query("COMMIT");
      expect((await migrating).applied).toEqual(["002_idx"]);
    } finally {
      holder.release();
      await db.close();
    }
    expect(await indexes(url)).toEqual({ T_k_idx: true });
    expect(await recorded(url)).toEqual(["001_t", "002_idx"]);
  });

  it("builds the index once when several processes start together (none deadlocks waiting for the lock)", async () => {
    const url = freshUrl();
    const dir = migrationsDir({
      "001_t": TABLE,
      "002_idx": CONCURRENT,
      "003_after": `INSERT INTO "T" (k) VALUES ('x');`,
    });
    const results = await Promise.all(Array.from({ length: 4 }, () => migrate(url, dir)));
    expect(results.flatMap((r) => r.applied).sort()).toEqual(["001_t", "002_idx", "003_after"]);
    expect(await indexes(url)).toEqual({ T_k_idx: true });
    expect(await recorded(url)).toEqual(["001_t", "002_idx", "003_after"]);
  });

  it("a failed build leaves an INVALID index and no record; the next run drops it and builds it again", async () => {
    const url = freshUrl();
    const dir = migrationsDir({
      "001_t": `${TABLE} INSERT INTO "T" (k) VALUES ('a'), ('a');`,
      "002_unique": `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "T_k_key" ON "T" (k);`,
    });
    await expect(migrate(url, dir)).rejects.toThrow(/migration 002_unique failed: could not create unique index/);
    expect(await indexes(url)).toEqual({ T_k_key: false });
    expect(await recorded(url)).toEqual(["001_t"]);
    // The cause fixed by hand, the same files run again.
    const db = createDb({ url });
    try {
      await db.pool.query(`DELETE FROM "T" WHERE id = (SELECT max(id) FROM "T")`);
    } finally {
      await db.close();
    }
    expect((await migrate(url, dir)).applied).toEqual(["002_unique"]);
    expect(await indexes(url)).toEqual({ T_k_key: true });
    expect(await recorded(url)).toEqual(["001_t", "002_unique"]);
  });

  it("refuses a concurrent index without IF NOT EXISTS and a name, before applying anything", async () => {
    const url = freshUrl();
    for (const sql of [`CREATE INDEX CONCURRENTLY "T_k_idx" ON "T" (k);`, `CREATE INDEX CONCURRENTLY ON "T" (k);`]) {
      await expect(migrate(url, migrationsDir({ "001_t": TABLE, "002_idx": sql }))).rejects.toThrow(
        /migration 002_idx: write CREATE \[UNIQUE\] INDEX CONCURRENTLY IF NOT EXISTS/,
      );
    }
    expect(await recorded(url)).toEqual([]);
  });

  it("CREATE INDEX CONCURRENTLY beside other statements: refused by PostgreSQL, rolled back, the rule named", async () => {
    const url = freshUrl();
    const dir = migrationsDir({ "001_t": `${TABLE} CREATE INDEX CONCURRENTLY IF NOT EXISTS "T_k_idx" ON "T" (k);` });
    await expect(migrate(url, dir)).rejects.toThrow(
      /001_t failed: CREATE INDEX CONCURRENTLY cannot run inside a transaction block \(only a migration whose one statement is CREATE INDEX CONCURRENTLY/,
    );
    expect(await indexes(url)).toEqual({});
  });

  // A file's own COMMIT ended the migration's transaction: what came before it stayed applied, nothing was recorded,
  // and every later run failed on what it had created ("relation … already exists"), naming neither the file's COMMIT
  // nor the half-applied migration.
  it("a migration that controls its own transaction (BEGIN, COMMIT, ROLLBACK, …): refused before anything is applied", async () => {
    for (const [i, sql] of [
      `BEGIN; ${TABLE} COMMIT;`,
      `${TABLE} COMMIT; SELECT no_such_function();`,
      `START TRANSACTION ISOLATION LEVEL SERIALIZABLE; ${TABLE} END;`,
      `${TABLE} ROLLBACK;`,
      `${TABLE} ABORT;`,
    ].entries()) {
      const url = freshUrl();
      const dir = migrationsDir({ "001_a": `CREATE TABLE "A" (id int);`, "002_tx": sql });
      const error = await migrate(url, dir).then(
        () => null,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(error?.code, `${i}: ${String(error?.message)}`).toBe("MIGRATION_TRANSACTION_CONTROL");
      expect(error?.message).toMatch(/^migration 002_tx controls its own transaction \(/);
      expect(await recorded(url)).toEqual([]);
    }
  });

  it("savepoints, PL/pgSQL blocks and SQL-standard function bodies are not transaction control", async () => {
    const url = freshUrl();
    const dir = migrationsDir({
      "001_ok": `${TABLE}
        SAVEPOINT s; INSERT INTO "T" (k) VALUES (1); ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s;
        DO $$ BEGIN PERFORM 1; END $$;
        CREATE FUNCTION "two"() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;`,
    });
    expect((await migrate(url, dir)).applied).toEqual(["001_ok"]);
  });

  it("the committed index migrations are concurrent ones; every other committed migration runs in a transaction", () => {
    const plans = Object.fromEntries(readMigrations().map((m) => [m.name, planMigration(m)]));
    expect(plans["20261201140000_notification_out_refund_no_index"]).toEqual({
      kind: "concurrent-index",
      index: "Notification_outRefundNo_idx",
    });
    expect(plans["20261201141000_notification_mchid_received_at_index"]).toEqual({
      kind: "concurrent-index",
      index: "Notification_mchid_receivedAt_idx",
    });
    expect(plans["20261129000000_init"]).toEqual({ kind: "transaction" });
  });
});

describe("splitStatements", () => {
  it("splits on semicolons outside strings, identifiers, dollar bodies and comments; drops the comments", () => {
    const sql = `-- a; comment
SELECT 'a;b', E'it\\'s;', "x;y" /* c; /* nested; */ still; */ FROM t;
CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
SELECT $$;$$, $1;;
`;
    expect(splitStatements(sql)).toEqual([
      `SELECT 'a;b', E'it\\'s;', "x;y"   FROM t`,
      "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
      "SELECT $$;$$, $1",
    ]);
  });

  it("an unquoted index name is folded to lower case, as PostgreSQL does", () => {
    const file = {
      name: "x",
      sql: "create index concurrently if not exists Some_Idx on t (k)",
      checksum: "",
      acceptedChecksums: [],
    };
    expect(planMigration(file)).toEqual({ kind: "concurrent-index", index: "some_idx" });
  });
});

describe("migrations that drop and create the payment function", () => {
  it("keep the privileges a deployment gave it: PUBLIC's revoke stays revoked, the worker role's grant stays", async () => {
    const url = freshUrl();
    const all = readMigrations();
    // The previous release: every migration before the first that drops and recreates wpn_apply_payments.
    const previous = all.filter((m) => m.name < "20261202110000");
    expect(previous.length).toBeLessThan(all.length);
    await migrate(url, migrationsDir(Object.fromEntries(previous.map((m) => [m.name, m.sql]))));
    const role = `wpn_fn_${Math.random().toString(36).slice(2, 8)}`;
    const db = createDb({ url });
    const fn = "wpn_apply_payments(json)";
    await db.pool.query(`CREATE ROLE ${role}`);
    try {
      await db.pool.query(`REVOKE ALL ON FUNCTION ${fn} FROM PUBLIC`);
      await db.pool.query(`GRANT EXECUTE ON FUNCTION ${fn} TO ${role}`);
      await migrate(url);
      const { rows } = await db.pool.query<{ role_can: boolean; public_can: boolean; columns: number }>(
        `SELECT has_function_privilege($1, $2::regprocedure, 'EXECUTE') AS role_can,
                EXISTS (SELECT 1 FROM pg_proc p, aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
                         WHERE p.oid = $2::regprocedure AND a.grantee = 0) AS public_can,
                (SELECT cardinality(proallargtypes) FROM pg_proc WHERE oid = $2::regprocedure) AS columns`,
        [role, fn],
      );
      // The new function (it answers out_applied_at: 1 argument + 10 result columns), with the same grants.
      expect(rows[0]).toEqual({ role_can: true, public_can: false, columns: 11 });
    } finally {
      // A role cannot be dropped while it holds a privilege (the migrations gave it one on wpn_notification_twins
      // too): DROP OWNED BY revokes them all, it owns nothing. The schema (and the functions) go with freshSchemas.
      await db.pool.query(`DROP OWNED BY ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
      await db.close();
    }
  });
});

describe("the migration that creates the parse statement's twin function", () => {
  it("gives it the payment function's grants: a worker role that may apply payments may parse, PUBLIC may not", async () => {
    const url = freshUrl();
    const previous = readMigrations().filter((m) => m.name < "20261204100000");
    await migrate(url, migrationsDir(Object.fromEntries(previous.map((m) => [m.name, m.sql]))));
    const role = `wpn_fn_${Math.random().toString(36).slice(2, 8)}`;
    const db = createDb({ url });
    const [payments, twins] = ["wpn_apply_payments(json)", "wpn_notification_twins(text[], text[])"];
    await db.pool.query(`CREATE ROLE ${role}`);
    try {
      await db.pool.query(`REVOKE ALL ON FUNCTION ${payments} FROM PUBLIC`);
      await db.pool.query(`GRANT EXECUTE ON FUNCTION ${payments} TO ${role}`);
      await migrate(url);
      const { rows } = await db.pool.query<{ role_can: boolean; public_can: boolean }>(
        `SELECT has_function_privilege($1, $2::regprocedure, 'EXECUTE') AS role_can,
                EXISTS (SELECT 1 FROM pg_proc p, aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
                         WHERE p.oid = $2::regprocedure AND a.grantee = 0) AS public_can`,
        [role, twins],
      );
      expect(rows[0]).toEqual({ role_can: true, public_can: false });
    } finally {
      // As above: revokes its privileges, then drops it.
      await db.pool.query(`DROP OWNED BY ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
      await db.close();
    }
  });
});
