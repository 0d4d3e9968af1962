import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { quoteIdent, readMigrations } from "@wpn/db";
import { TEST_DATABASE_BASE_URL } from "@wpn/testing";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { eventually, repoRoot } from "./support/processes.ts";

// `npm run db:migrate` while another process migrates, and its migration settings: what it prints and its exit
// status. A database of this file's own: the migration lock is one per database, and a test holds it for seconds.
const database = `wpn_migscript_${Math.random().toString(36).slice(2, 10)}`;
const url = new URL(TEST_DATABASE_BASE_URL);
url.pathname = `/${database}`;
// Databases are created and dropped from the cluster's `postgres` database: the suite's shared test database need not
// exist yet when this file runs first (or alone) on a fresh cluster.
const adminUrl = new URL(TEST_DATABASE_BASE_URL);
adminUrl.pathname = "/postgres";

afterAll(async () => {
  const admin = new pg.Client({ connectionString: adminUrl.toString() });
  await admin.connect();
  try {
    for (const name of [database, `${database}_args`, `${database}_state`])
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
});

interface Run {
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly status: Promise<number | null>;
}

/** scripts/migrate.ts (what `npm run db:migrate` runs after generating the client) with `env` over this test's. */
function dbMigrate(env: Record<string, string>, ...args: string[]): Run {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/migrate.ts", ...args], {
    cwd: repoRoot,
    env: { ...process.env, DATABASE_URL: url.toString(), LOG_LEVEL: "info", ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  return {
    stdout: () => stdout,
    stderr: () => stderr,
    status: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
  };
}

// Concurrent: the configuration error never reaches PostgreSQL, and each test is mostly processes starting.
describe.concurrent("npm run db:migrate while another process migrates", () => {
  it("says once that it waits, naming the holder; past MIGRATE_WAIT_SECONDS fails MIGRATION_LOCK_WAIT_TIMEOUT (exit 1), otherwise applies once the holder lets go (exit 0)", async () => {
    const admin = new pg.Client({ connectionString: adminUrl.toString() });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${quoteIdent(database)}`);
    await admin.end();
    const holder = new pg.Client({ connectionString: url.toString(), application_name: "test:other-migrator" });
    await holder.connect();
    try {
      const { rows } = await holder.query<{ pid: number }>(
        "SELECT pg_backend_pid() AS pid, pg_advisory_lock(72707369)",
      );
      const pid = rows[0]?.pid;
      const impatient = dbMigrate({ MIGRATE_WAIT_SECONDS: "1" });
      const patient = dbMigrate({ MIGRATE_WAIT_SECONDS: "60" });
      const waitLine = new RegExp(
        `^MIGRATION_LOCK_WAIT: another process is applying migrations \\(it holds the migration lock: pid ${pid} \\(application_name "test:other-migrator"`,
      );

      expect(await impatient.status, impatient.stderr()).toBe(1);
      const lines = impatient.stderr().split("\n");
      expect(lines[0]).toMatch(waitLine);
      expect(lines[0]).toMatch(/; waiting for it to finish, at most 1 s$/);
      expect(lines[1]).toMatch(
        new RegExp(
          `^npm run db:migrate failed: MIGRATION_LOCK_WAIT_TIMEOUT: another process has held the migration lock for more than 1 s — pid ${pid} `,
        ),
      );
      expect(lines.slice(2)).toEqual([""]);
      expect(impatient.stdout()).toBe("");

      await eventually(async () => (waitLine.test(patient.stderr()) ? true : undefined), 20_000, patient.stderr);
      await holder.query("SELECT pg_advisory_unlock(72707369)");
      expect(await patient.status, patient.stderr()).toBe(0);
      expect(patient.stderr().split("\n")).toEqual([expect.stringMatching(waitLine), ""]);
      expect(patient.stdout()).toMatch(new RegExp(`^applied ${readMigrations().length} migration\\(s\\): `));
    } finally {
      await holder.end();
    }
  });

  it("--help prints the usage and exits 0; an argument it does not take is MIGRATE_ARGUMENT_INVALID, exit 2; neither touches PostgreSQL", async () => {
    // A database of its own name that must never be created: both runs stop before ensureDatabase.
    const untouched = new URL(url);
    untouched.pathname = `/${database}_args`;
    const help = dbMigrate({ DATABASE_URL: untouched.toString() }, "--help");
    expect(await help.status, help.stderr()).toBe(0);
    expect(help.stdout()).toMatch(/^usage: npm run db:migrate\n/);
    expect(help.stderr()).toBe("");
    // The README section it points to exists.
    const section = /README\.md, "([^"]+)"/.exec(help.stdout())?.[1];
    expect(readFileSync(resolve(repoRoot, "README.md"), "utf8").split("\n")).toContain(`## ${section}`);
    for (const args of [["--dry-run"], ["now"], ["-x"]]) {
      const wrong = dbMigrate({ DATABASE_URL: untouched.toString() }, ...args);
      expect(await wrong.status, args.join(" ")).toBe(2);
      expect(wrong.stderr()).toMatch(/^MIGRATE_ARGUMENT_INVALID: .*\nusage: npm run db:migrate\n/);
      expect(wrong.stdout()).toBe("");
    }
    const admin = new pg.Client({ connectionString: adminUrl.toString() });
    await admin.connect();
    try {
      const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [`${database}_args`]);
      expect(rowCount).toBe(0);
    } finally {
      await admin.end();
    }
  });

  it("a MIGRATE_LOCK_TIMEOUT_MS that would turn the timeout off: a configuration error, exit 78", async () => {
    const run = dbMigrate({ MIGRATE_LOCK_TIMEOUT_MS: "0" });
    expect(await run.status).toBe(78);
    expect(run.stderr()).toMatch(/^configuration error: MIGRATE_LOCK_TIMEOUT_MS /);
  });

  it("a bare % in DATABASE_URL's database name: a configuration error, exit 78, the password not echoed", async () => {
    // parseDatabaseUrl's decodeURIComponent threw URIError, and so did the explanation of it: a stack trace, exit 1.
    const bare = new URL(url);
    bare.password = "s3cret-pw";
    const run = dbMigrate({ DATABASE_URL: `${bare.toString().replace(/\/[^/]*$/, "")}/wpn%zz` });
    expect(await run.status).toBe(78);
    expect(run.stderr()).toMatch(/^configuration error: DATABASE_URL has a % in its database or user name /);
    expect(`${run.stdout()}${run.stderr()}`).not.toContain("s3cret-pw");
  });

  it("a migration edited after it was applied, or left failed by prisma migrate deploy: exit 1, DB_NOT_MIGRATED naming it and what to do", async () => {
    // The run refused with "migration … was modified after it was applied (checksum mismatch)" and "… failed earlier
    // and needs manual resolution": no code, and no word of what to do, where the apps' start-up check says both.
    const stateUrl = new URL(url);
    stateUrl.pathname = `/${database}_state`;
    const first = dbMigrate({ DATABASE_URL: stateUrl.toString() });
    expect(await first.status, first.stderr()).toBe(0);
    const last = readMigrations().at(-1)?.name ?? "";
    const client = new pg.Client({ connectionString: stateUrl.toString() });
    await client.connect();
    try {
      const { rows } = await client.query<{ checksum: string }>(
        "SELECT checksum FROM _prisma_migrations WHERE migration_name = $1",
        [last],
      );
      await client.query("UPDATE _prisma_migrations SET checksum = 'edited' WHERE migration_name = $1", [last]);
      const edited = dbMigrate({ DATABASE_URL: stateUrl.toString() });
      expect(await edited.status).toBe(1);
      expect(edited.stderr()).toMatch(
        new RegExp(
          `^npm run db:migrate failed: DB_NOT_MIGRATED: .*migration ${last} modified after it was applied .*: restore the file as it was applied\n`,
        ),
      );
      await client.query("UPDATE _prisma_migrations SET checksum = $2 WHERE migration_name = $1", [
        last,
        rows[0]?.checksum,
      ]);
      await client.query(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) VALUES ('left-failed', 'x', '20990101000000_elsewhere', now(), 0)",
      );
      const failed = dbMigrate({ DATABASE_URL: stateUrl.toString() });
      expect(await failed.status).toBe(1);
      expect(failed.stderr()).toMatch(
        /^npm run db:migrate failed: DB_NOT_MIGRATED: .*migration 20990101000000_elsewhere failed earlier .*mark it with `npx prisma migrate resolve`/,
      );
    } finally {
      await client.end();
    }
  });
});
