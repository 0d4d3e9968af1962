import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadMigrateSettings } from "@wpn/config";
import {
  checkFailure,
  ensureDatabase,
  MIGRATE_DEFAULTS,
  type MigrateEvent,
  migrate,
  parseDatabaseUrl,
  quoteIdent,
  readMigrations,
  verifyMigrations,
} from "@wpn/db";
import { TEST_DATABASE_BASE_URL, withSchema } from "@wpn/testing";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// What a migration does to a live database, and what a process does while another one migrates. A database of this
// file's own rather than a schema: the migration lock is one per database, so the other test files' migrations would
// hold it while a test expects to, or wait behind a test's holder. Schemas inside it as in migrate.test.ts.
const database = `wpn_mlk_${Math.random().toString(36).slice(2, 10)}`;
const baseUrl = new URL(TEST_DATABASE_BASE_URL);
baseUrl.pathname = `/${database}`;

beforeAll(async () => {
  await ensureDatabase(baseUrl.toString());
});

afterAll(async () => {
  const admin = new pg.Client({ connectionString: TEST_DATABASE_BASE_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
});

let schemas = 0;
function freshUrl(): string {
  schemas += 1;
  return withSchema(baseUrl.toString(), `mlk_${schemas}`);
}

/** Prisma's key (and this project's) for the migration lock: pg_advisory_lock(72707369). */
const MIGRATION_LOCK_KEY = 72_707_369;

function migrationsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "wpn-migrations-"));
  for (const [name, sql] of Object.entries(files)) {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, "migration.sql"), sql);
  }
  return dir;
}

/** A session of `url`'s schema named `applicationName` (as a report, a worker or another migrator would be). */
async function session(url: string, applicationName: string): Promise<pg.Client & { pid: number }> {
  const target = parseDatabaseUrl(url);
  const client = new pg.Client({ connectionString: target.connectionString, application_name: applicationName });
  await client.connect();
  await client.query(`SET search_path TO ${quoteIdent(target.schema)}`);
  const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  return Object.assign(client, { pid: rows[0]?.pid ?? 0 });
}

/** Settles to "settled" when `work` settles either way: a race partner that never rejects. */
function settled(work: Promise<unknown>): Promise<"settled"> {
  return work.then(
    () => "settled",
    () => "settled",
  );
}

/** Resolves `null` after `ms`: the other side of a race that must be won in time. */
function after(ms: number): Promise<null> {
  return new Promise((resolve) => setTimeout(() => resolve(null), ms));
}

/**
 * Waits until a statement whose text contains `marker` waits for a lock (pg_stat_activity), polled every 10 ms by
 * `observer` — a session outside any transaction: one inside reads the statistics as they were at its first look.
 * Throws when `migrating` settles first or after 5 s: the migration never queued behind the holder.
 */
async function waitingForLock(observer: pg.Client, marker: string, migrating: Promise<unknown>): Promise<void> {
  const done = settled(migrating);
  const deadline = Date.now() + 5_000;
  for (;;) {
    const { rowCount } = await observer.query(
      `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`,
      [marker],
    );
    if (rowCount) return;
    if ((await Promise.race([done, after(10)])) === "settled") throw new Error("the migration ended without waiting");
    if (Date.now() > deadline) throw new Error(`no statement with "${marker}" waited for a lock within 5 s`);
  }
}

async function recorded(url: string): Promise<string[]> {
  const client = await session(url, "test:recorded");
  try {
    const { rows } = await client.query<{ name: string }>(
      `SELECT migration_name AS name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY 1`,
    );
    return rows.map((r) => r.name);
  } finally {
    await client.end();
  }
}

const TABLE = `CREATE TABLE "Busy" (id int); INSERT INTO "Busy" VALUES (1);`;
const ALTER = `ALTER TABLE "Busy" ADD COLUMN note text;`;

describe("migrate: a migration's table locks on a live database (lock_timeout, retries)", () => {
  it("behind a long transaction: a worker's query waits at most about the lock timeout; after its attempts the migration fails MIGRATION_BLOCKED naming the blocking session", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_t": TABLE }));
    const report = await session(url, "test:long-report");
    const worker = await session(url, "test:worker");
    const events: MigrateEvent[] = [];
    try {
      // A dashboard query or a report: its transaction holds ACCESS SHARE on the table until it ends.
      await report.query("BEGIN");
      await report.query(`SELECT count(*) FROM "Busy"`);
      // 1 s, not shorter: the blocker is named by a sample taken while the last attempt waits, one wake-up of this
      // process within the timeout — which a process short of CPU (nice 19 beside a busy host's work) can miss in
      // 300 ms. The worker's bound below stays well under its wait without a lock timeout (cancelled after 5 s).
      const migrating = migrate(url, migrationsDir({ "001_t": TABLE, "002_alter": ALTER }), {
        lockTimeoutMs: 1_000,
        attempts: 3,
        retryDelayMs: 100,
        log: { warn: (event) => events.push(event) },
      });
      const outcome = migrating.then(
        () => null,
        (error: unknown) => error as Error & { code?: string },
      );
      await waitingForLock(worker, "ADD COLUMN note", migrating);
      // Queued behind the ALTER's ACCESS EXCLUSIVE request, as every statement on the table is while it waits. Without
      // a lock timeout it waits for the report to end: cancelled after 5 s here.
      await worker.query("SET statement_timeout = 5000");
      const started = performance.now();
      await worker.query(`SELECT count(*) FROM "Busy"`);
      expect(performance.now() - started).toBeLessThan(1_000 + 500);

      const error = await outcome;
      expect(error?.code).toBe("MIGRATION_BLOCKED");
      expect(error?.message).toMatch(/^migration 002_alter could not take its locks within lock_timeout 1 s/);
      expect(error?.message).toContain(`pid ${report.pid}`);
      expect(error?.message).toContain('application_name "test:long-report"');
      expect(error?.message).toContain('state "idle in transaction"');
      expect(error?.message).toMatch(/query started \d{4}-\d\d-\d\dT/);
      expect(events.map((e) => e.code)).toEqual(["MIGRATION_RETRY", "MIGRATION_RETRY"]);
    } finally {
      await report.query("ROLLBACK");
      await report.end();
      await worker.end();
    }
    // Nothing of the migration was applied or recorded: the next run applies it.
    expect(await recorded(url)).toEqual(["001_t"]);
    expect((await migrate(url, migrationsDir({ "001_t": TABLE, "002_alter": ALTER }))).applied).toEqual(["002_alter"]);
  });

  it("names the blocking session's statement without its literals: an operator's UPDATE of a key is not printed with the key", async () => {
    // Merchant rows are written with SQL by hand (README): the session a migration waits for can be one that set a
    // key, its statement — as pg_stat_activity shows it — holding the key. MIGRATION_RETRY and MIGRATION_BLOCKED are
    // printed on stderr and logged.
    const url = freshUrl();
    const KEYS = `CREATE TABLE "Keys" (mchid text, "apiV3Key" text); INSERT INTO "Keys" VALUES ('1900000109', NULL);`;
    await migrate(url, migrationsDir({ "001_t": KEYS }));
    const operator = await session(url, "psql");
    const secret = `K${Math.random().toString(36).slice(2, 12)}${Math.random().toString(36).slice(2, 12)}`;
    const printed: string[] = [];
    try {
      await operator.query("BEGIN");
      // A standard string, an escape string (`\'` does not end it) and a dollar-quoted one.
      await operator.query(
        `UPDATE "Keys" SET "apiV3Key" = '${secret}' WHERE mchid = '1900000109' OR mchid = E'\\'${secret}' OR mchid = $q$${secret}$q$`,
      );
      const error = await migrate(
        url,
        migrationsDir({ "001_t": KEYS, "002_alter": `ALTER TABLE "Keys" ADD note text;` }),
        // The default's 2 s: what is checked is how the blocker is printed, which needs it seen while each attempt
        // waits — one wake-up of this process in the timeout, late on a busy host at nice 19.
        {
          lockTimeoutMs: MIGRATE_DEFAULTS.lockTimeoutMs,
          attempts: 2,
          retryDelayMs: 50,
          log: { warn: (event, message) => printed.push(JSON.stringify(event), message) },
        },
      ).then(
        () => null,
        (failure: unknown) => failure as Error & { code?: string },
      );
      expect(error?.code).toBe("MIGRATION_BLOCKED");
      printed.push(error?.message ?? "");
      expect(printed.join("\n")).toContain(`pid ${operator.pid}`);
      for (const text of printed.slice(1)) {
        expect(text).toContain(
          `UPDATE "Keys" SET "apiV3Key" = '…' WHERE mchid = '…' OR mchid = E'…' OR mchid = $q$…$q$`,
        );
      }
      expect(printed.join("\n")).not.toContain(secret);
    } finally {
      await operator.query("ROLLBACK");
      await operator.end();
    }
  });

  it("a long transaction that ends during the retries: the migration applies on a later attempt, each retry logged with the blocking session", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_t": TABLE }));
    const report = await session(url, "test:long-report");
    const events: MigrateEvent[] = [];
    let retried: () => void = () => undefined;
    const firstRetry = new Promise<"retried">((resolve) => {
      retried = () => resolve("retried");
    });
    try {
      await report.query("BEGIN");
      await report.query(`SELECT count(*) FROM "Busy"`);
      // The blocking session is named by sampling pg_blocking_pids while the attempt waits, on a connection opened
      // before it: one wake-up of this process within the timeout is enough. A process short of CPU — beside a busy
      // host's other work, one at nice 19 waits up to a second for its turn — can miss a short one (logged blockers:
      // []); 5 s outlasts several such waits. The test lasts about one timeout: the report ends at the first retry.
      const migrating = migrate(url, migrationsDir({ "001_t": TABLE, "002_alter": ALTER }), {
        lockTimeoutMs: 5_000,
        attempts: 5,
        retryDelayMs: 100,
        log: {
          warn: (event) => {
            events.push(event);
            retried();
          },
        },
      });
      // Retried, neither settled first (applied through the report's lock, or failed at once) nor still waiting well
      // past its lock timeout (none set: the ALTER would wait for the report). The bound is for that last case only:
      // the time to the first retry is the migration's own setup plus one timeout, however long a busy host takes.
      const first = await Promise.race([firstRetry, settled(migrating), after(30_000)]);
      expect(first).toBe("retried");
      await report.query("COMMIT");
      expect(await migrating).toEqual({ applied: ["002_alter"], alreadyApplied: ["001_t"] });
    } finally {
      await report.query("ROLLBACK");
      await report.end();
    }
    expect(events[0]).toMatchObject({
      code: "MIGRATION_RETRY",
      migration: "002_alter",
      attempt: 1,
      attempts: 5,
      blockers: [{ pid: report.pid, applicationName: "test:long-report", state: "idle in transaction" }],
    });
    expect(await recorded(url)).toEqual(["001_t", "002_alter"]);
  }, 60_000);

  it("opens the connection that names the blocking session before the migration's first attempt: the lock timeout is spent sampling, not connecting", async () => {
    // A connect on a busy host (a CI runner's 2 CPUs shared by many test processes) takes a good share of a short
    // lock timeout; opened while the attempt waits, it left no time to sample, and the blocker went unnamed. Told
    // apart by the server's clocks, not by a race: when the watch session started (backend_start) against when the
    // migration's transaction did (xact_start). 5 s of lock timeout: the comparison is made while it waits.
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_t": TABLE }));
    const report = await session(url, "test:long-report");
    const observer = await session(url, "test:observer");
    try {
      await report.query("BEGIN");
      await report.query(`SELECT count(*) FROM "Busy"`);
      const migrating = migrate(url, migrationsDir({ "001_t": TABLE, "002_alter": ALTER }), {
        lockTimeoutMs: 5_000,
        attempts: 1,
      });
      await waitingForLock(observer, "ADD COLUMN note", migrating);
      // The migrating process's two sessions: `wechatpay-notify:migrate (pid …)` and `…:migrate-watch (pid …)`.
      const { rows } = await observer.query<{ opened_first: boolean }>(
        `SELECT w.backend_start < m.xact_start AS opened_first
         FROM pg_stat_activity m JOIN pg_stat_activity w
           ON w.datname = m.datname AND w.application_name = replace(m.application_name, ':migrate ', ':migrate-watch ')
         WHERE m.wait_event_type = 'Lock' AND m.query LIKE '%ADD COLUMN note%'`,
      );
      expect(rows).toEqual([{ opened_first: true }]);
      await report.query("COMMIT");
      expect((await migrating).applied).toEqual(["002_alter"]);
    } finally {
      await report.query("ROLLBACK");
      await report.end();
      await observer.end();
    }
  });

  it("a watch connection that cannot open does not stop the migration: it applies, and a blocked one says why its blocker is not named", async () => {
    // A role allowed one connection: the migration's own takes it, the watch's is refused (too many connections).
    const role = `wpn_mlk_one_${Math.random().toString(36).slice(2, 10)}`;
    const adminUrl = freshUrl();
    const { schema } = parseDatabaseUrl(adminUrl);
    const admin = await session(adminUrl, "test:admin");
    const roleUrl = new URL(baseUrl);
    roleUrl.username = role;
    roleUrl.password = "";
    const url = withSchema(roleUrl.toString(), schema);
    try {
      await admin.query(`CREATE ROLE ${quoteIdent(role)} LOGIN CONNECTION LIMIT 1`);
      // CREATE SCHEMA IF NOT EXISTS wants the privilege even for a schema that exists.
      await admin.query(`GRANT CREATE ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(role)}`);
      expect((await migrate(url, migrationsDir({ "001_t": TABLE }))).applied).toEqual(["001_t"]);
      await admin.query("BEGIN");
      await admin.query(`SELECT count(*) FROM ${quoteIdent(schema)}."Busy"`);
      const error = await migrate(url, migrationsDir({ "001_t": TABLE, "002_alter": ALTER }), {
        lockTimeoutMs: 300,
        attempts: 1,
      }).then(
        () => null,
        (failure: unknown) => failure as Error & { code?: string },
      );
      expect(error?.code).toBe("MIGRATION_BLOCKED");
      expect(error?.message).toMatch(
        /blocked by a session that could not be read \(the watch connection did not open: too many connections for role/,
      );
    } finally {
      await admin.query("ROLLBACK");
      // Its schema and its privilege on the database: a role that owns or may do something cannot be dropped.
      await admin.query(`DROP OWNED BY ${quoteIdent(role)}`);
      await admin.query(`DROP ROLE ${quoteIdent(role)}`);
      await admin.end();
    }
  });

  it("a concurrent index build is not bound by the lock timeout: it waits for an open transaction as long as it lasts", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({ "001_t": TABLE }));
    const writer = await session(url, "test:writer");
    const observer = await session(url, "test:observer");
    try {
      await writer.query("BEGIN");
      await writer.query(`INSERT INTO "Busy" VALUES (2)`);
      const migrating = migrate(
        url,
        migrationsDir({
          "001_t": TABLE,
          "002_idx": `CREATE INDEX CONCURRENTLY IF NOT EXISTS "Busy_id_idx" ON "Busy" (id);`,
        }),
        { lockTimeoutMs: 100, attempts: 1 },
      );
      await waitingForLock(observer, "CREATE INDEX CONCURRENTLY", migrating);
      // Several lock timeouts long: the build keeps waiting (it blocks no writer meanwhile).
      expect(await Promise.race([settled(migrating), after(400)])).toBeNull();
      await writer.query("COMMIT");
      expect((await migrating).applied).toEqual(["002_idx"]);
    } finally {
      await writer.end();
      await observer.end();
    }
  });

  it("chosen as a deadlock's victim (a worker's transaction locked the tables in the other order): rolled back and tried again, logged, then applied once", async () => {
    const url = freshUrl();
    const TWO = `CREATE TABLE "First" (id int); CREATE TABLE "Second" (id int);`;
    const BOTH = `ALTER TABLE "First" ADD COLUMN note text; ALTER TABLE "Second" ADD COLUMN note text;`;
    await migrate(url, migrationsDir({ "001_t": TWO }));
    const worker = await session(url, "test:worker");
    const events: MigrateEvent[] = [];
    try {
      await worker.query("BEGIN");
      await worker.query(`SELECT count(*) FROM "Second"`);
      // The migration takes "First", then waits for "Second"; PostgreSQL's deadlock check (deadlock_timeout, 1 s by
      // default) runs first in the session that waited first, the migration's, which is therefore the victim.
      const migrating = migrate(url, migrationsDir({ "001_t": TWO, "002_both": BOTH }), {
        lockTimeoutMs: 10_000,
        attempts: 3,
        retryDelayMs: 50,
        log: { warn: (event) => events.push(event) },
      });
      const observer = await session(url, "test:observer");
      try {
        await waitingForLock(observer, `ALTER TABLE "Second"`, migrating);
      } finally {
        await observer.end();
      }
      // Waits for "First" until the deadlock is broken by the migration's rollback.
      await worker.query(`SELECT count(*) FROM "First"`);
      await worker.query("COMMIT");
      expect(await migrating).toEqual({ applied: ["002_both"], alreadyApplied: ["001_t"] });
    } finally {
      await worker.query("ROLLBACK");
      await worker.end();
    }
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ code: "MIGRATION_RETRY", migration: "002_both", attempt: 1, reason: "deadlock" });
    expect(await recorded(url)).toEqual(["001_t", "002_both"]);
  });
});

describe("migrate: defaults", () => {
  it("are the settings' defaults (MIGRATE_LOCK_TIMEOUT_MS, MIGRATE_WAIT_SECONDS), so a test migrates as a deployment does", () => {
    const settings = loadMigrateSettings({});
    expect(MIGRATE_DEFAULTS.lockTimeoutMs).toBe(settings.MIGRATE_LOCK_TIMEOUT_MS);
    expect(MIGRATE_DEFAULTS.waitLimitMs).toBe(settings.MIGRATE_WAIT_SECONDS * 1_000);
  });
});

describe("migrate: waiting for another process's migration run (the migration lock)", () => {
  it("logs once that it waits, naming the holder, and fails MIGRATION_LOCK_WAIT_TIMEOUT after the wait limit", async () => {
    const url = freshUrl();
    const other = await session(url, "test:other-migrator");
    const events: MigrateEvent[] = [];
    try {
      await other.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const started = performance.now();
      const migrating = migrate(url, migrationsDir({ "001_t": TABLE }), {
        waitLimitMs: 400,
        log: { warn: (event) => events.push(event) },
      });
      const outcome = await Promise.race([
        migrating.then(
          () => "applied",
          (error: unknown) => error as Error & { code?: string },
        ),
        after(3_000),
      ]);
      expect(outcome).toBeInstanceOf(Error);
      const error = outcome as Error & { code?: string };
      expect(error.code).toBe("MIGRATION_LOCK_WAIT_TIMEOUT");
      expect(performance.now() - started).toBeLessThan(400 + 1_000);
      expect(error.message).toMatch(/^another process has held the migration lock for more than 400 ms/);
      expect(error.message).toContain(`pid ${other.pid}`);
      expect(error.message).toContain('application_name "test:other-migrator"');
      expect(events).toEqual([
        expect.objectContaining({
          code: "MIGRATION_LOCK_WAIT",
          waitLimitMs: 400,
          holder: expect.objectContaining({ pid: other.pid, applicationName: "test:other-migrator" }),
        }),
      ]);
    } finally {
      await other.end();
    }
  });

  it("waits, logged once, while another process migrates, then applies what is left", async () => {
    const url = freshUrl();
    const other = await session(url, "test:other-migrator");
    const events: MigrateEvent[] = [];
    try {
      await other.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const migrating = migrate(url, migrationsDir({ "001_t": TABLE }), {
        waitLimitMs: 10_000,
        log: { warn: (event) => events.push(event) },
      });
      const deadline = Date.now() + 3_000;
      while (events.length === 0 && Date.now() < deadline) await after(10);
      // Several polls of the lock (every 100 ms) later, still one line.
      await after(350);
      expect(events.map((e) => e.code)).toEqual(["MIGRATION_LOCK_WAIT"]);
      await other.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
      expect((await migrating).applied).toEqual(["001_t"]);
      expect(events).toHaveLength(1);
    } finally {
      await other.end();
    }
  });

  it("six processes at once: each migration applied exactly once; the five that waited each said so once, then succeeded", async () => {
    const url = freshUrl();
    const dir = migrationsDir({
      // Holds the lock for 300 ms at least, so the others are seen waiting.
      "001_a": `CREATE TABLE "Counter" (n int NOT NULL); INSERT INTO "Counter" VALUES (1); SELECT pg_sleep(0.3);`,
      "002_b": `UPDATE "Counter" SET n = n + 1;`,
    });
    const logs = Array.from({ length: 6 }, () => [] as MigrateEvent[]);
    const results = await Promise.all(
      logs.map((events) => migrate(url, dir, { log: { warn: (event) => events.push(event) } })),
    );
    expect(results.flatMap((r) => r.applied).sort()).toEqual(["001_a", "002_b"]);
    // Per process: what it applied, what it reported. The one that applied found the lock free and said nothing.
    const runs = results.map((result, i) => ({
      applied: result.applied.length,
      reported: (logs[i] ?? []).map((event) => event.code),
    }));
    expect(runs.filter((run) => run.applied > 0)).toEqual([{ applied: 2, reported: [] }]);
    expect(runs.filter((run) => run.applied === 0)).toEqual(
      Array.from({ length: 5 }, () => ({ applied: 0, reported: ["MIGRATION_LOCK_WAIT"] })),
    );
    const counter = await session(url, "test:counter");
    try {
      expect((await counter.query(`SELECT n FROM "Counter"`)).rows).toEqual([{ n: 2 }]);
    } finally {
      await counter.end();
    }
  });
});

describe("an app's start-up check while another process migrates (prisma migrate deploy, or db:migrate elsewhere)", () => {
  /**
   * As `prisma migrate deploy` applies a migration: under the migration lock, its row inserted first with finished_at
   * null, the script run, then the row finished — the unfinished row is visible to every other session meanwhile.
   */
  async function prismaLikeRun(url: string, dir: string, name: string, sql: string) {
    const prisma = await session(url, "test:prisma-migrate-deploy");
    await prisma.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    const checksum = readMigrations(dir).find((m) => m.name === name)?.checksum;
    await prisma.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count)
       VALUES (gen_random_uuid()::text, $1, $2, now(), 0)`,
      [checksum, name],
    );
    return {
      finish: async () => {
        await prisma.query(sql);
        await prisma.query(
          `UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE migration_name = $1`,
          [name],
        );
        await prisma.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
        await prisma.end();
      },
    };
  }

  it("a migration in progress under the lock is waited for, not reported failed (DB_NOT_MIGRATED)", async () => {
    const url = freshUrl();
    const dir = migrationsDir({ "001_t": TABLE, "002_u": `CREATE TABLE "Later" (id int);` });
    await migrate(url, migrationsDir({ "001_t": TABLE }));
    const run = await prismaLikeRun(url, dir, "002_u", `CREATE TABLE "Later" (id int);`);
    const checking = verifyMigrations(url, { dir }).then(
      () => "verified",
      (error: unknown) => (error as Error).message,
    );
    // The check sees the unfinished row while the run holds the lock, then the run finishes.
    await after(300);
    await run.finish();
    expect(await checking).toBe("verified");
  });

  it("a pending migration while another process holds the lock is waited for too; once it let go, the verdict is the database's", async () => {
    const url = freshUrl();
    const dir = migrationsDir({ "001_t": TABLE });
    const other = await session(url, "test:other-migrator");
    try {
      await other.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const checking = verifyMigrations(url, { dir }).then(
        () => "verified",
        (error: unknown) => (error as Error).message,
      );
      await after(300);
      expect(await Promise.race([checking, after(0)])).toBeNull();
      await other.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
      expect(await checking).toMatch(/migration 001_t not applied/);
    } finally {
      await other.end();
    }
  });

  it("gives up after its wait limit with MIGRATION_LOCK_WAIT_TIMEOUT (the apps start unchecked, the worker checks again)", async () => {
    const url = freshUrl();
    const dir = migrationsDir({ "001_t": TABLE });
    const other = await session(url, "test:other-migrator");
    try {
      await other.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const error = await verifyMigrations(url, { dir, lockWaitMs: 300 }).then(
        () => null,
        (e: unknown) => e as Error & { code?: string },
      );
      expect(error?.code).toBe("MIGRATION_LOCK_WAIT_TIMEOUT");
      expect(checkFailure(error)).toBe("unreachable");
    } finally {
      await other.end();
    }
  });
});
