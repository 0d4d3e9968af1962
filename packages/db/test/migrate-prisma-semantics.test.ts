// Where this project's migrator must decide as `prisma migrate deploy` (Prisma 7.10) decides, so that either can run
// after the other on one database. Prisma's rules, from its sources: the CLI lists the migration folders and sorts
// them with `a.localeCompare(b)` (packages/migrate, listMigrations); the schema engine refuses to apply anything
// while any `_prisma_migrations` row has neither finished_at nor rolled_back_at (apply_migrations.rs,
// detect_failed_migrations: P3009), applies each listed migration that no row without rolled_back_at names, and
// records the checksum of the script as read — UTF-8 decoded, so an invalid byte counts as U+FFFD (checksum.rs).
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDb, ensureDatabase, MigrationStateError, migrate, readMigrations, verifyMigrations } from "@wpn/db";
import { TEST_DATABASE_BASE_URL } from "@wpn/testing";
import { beforeAll, describe, expect, it } from "vitest";
import { freshSchemas } from "./support/fresh-schemas.ts";

const freshUrl = freshSchemas("mps");
// The suite's shared database, which another file may not have created yet when this one runs alone.
beforeAll(() => ensureDatabase(TEST_DATABASE_BASE_URL));

function migrationsDir(files: Record<string, string | Buffer>): string {
  const dir = mkdtempSync(join(tmpdir(), "wpn-prisma-semantics-"));
  for (const [name, sql] of Object.entries(files)) {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, "migration.sql"), sql);
  }
  return dir;
}

async function query<T extends object>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const db = createDb({ url });
  try {
    return (await db.pool.query(text, params)).rows as T[];
  } finally {
    await db.close();
  }
}

/** A row as `prisma migrate deploy` leaves one; `started` orders it among the others (a PostgreSQL interval). */
async function recordRow(
  url: string,
  name: string,
  row: { finished: boolean; rolledBack: boolean; started: string; checksum?: string },
): Promise<void> {
  await query(
    url,
    `INSERT INTO "_prisma_migrations"
       (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
     VALUES (gen_random_uuid()::text, $1, CASE WHEN $2 THEN now() END, $3, CASE WHEN NOT $2 THEN 'boom' END,
             CASE WHEN $4 THEN now() END, now() + $5::interval, 0)`,
    [row.checksum ?? "x", row.finished, name, row.rolledBack, row.started],
  );
}

describe("the order migrations are applied in: Prisma's (the CLI's localeCompare)", () => {
  it("two migrations of one timestamp whose names differ in case: applied in Prisma's order", async () => {
    const dir = migrationsDir({
      "20261211120000_apple": `CREATE TABLE "Fruit" (id int);`,
      "20261211120000_Zebra": `ALTER TABLE "Fruit" ADD COLUMN stripes int;`,
    });
    const prisma = ["20261211120000_apple", "20261211120000_Zebra"];
    expect(readMigrations(dir).map((m) => m.name)).toEqual(prisma);
    expect((await migrate(freshUrl(), dir)).applied).toEqual(prisma);
  });

  it("prefixes of other lengths: the underscore sorts before the digits, as Prisma sorts it", () => {
    const dir = migrationsDir({ "2026121112_second": "SELECT 1;", "20261211_first": "SELECT 1;" });
    expect(readMigrations(dir).map((m) => m.name)).toEqual(["20261211_first", "2026121112_second"]);
  });

  // Prisma's order follows the machine's locale (in Danish, "aa" sorts after "z"): the committed names must not
  // depend on it, or `prisma migrate deploy` on another machine would apply them in another order.
  it("the committed migrations sort the same in code-unit order and in every locale", () => {
    const names = readMigrations().map((m) => m.name);
    expect([...names].sort()).toEqual(names);
    for (const locale of Intl.Collator.supportedLocalesOf(["da", "lt", "cs", "sv", "tr", "et", "zh", "ja", "de"])) {
      expect([...names].sort(new Intl.Collator(locale).compare), locale).toEqual(names);
    }
  });
});

describe("which recorded rows count: as `prisma migrate deploy` counts them", () => {
  const files = { "001_a": `CREATE TABLE "A" (id int);`, "002_b": `CREATE TABLE "B" (id int);` };

  for (const [when, started] of [
    ["after", "1 second"],
    ["before", "-1 hour"],
  ] as const) {
    it(`a failed row beside a finished one of the same migration (failed ${when} it): refused, as P3009`, async () => {
      const url = freshUrl();
      await migrate(url, migrationsDir({ "001_a": files["001_a"] }));
      await recordRow(url, "001_a", { finished: false, rolledBack: false, started });
      await expect(migrate(url, migrationsDir(files))).rejects.toThrow(/migration 001_a failed earlier/);
      const tables = await query(url, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`);
      expect(tables).toEqual([{ tablename: "A" }, { tablename: "_prisma_migrations" }]);
      const error = await verifyMigrations(url, { dir: migrationsDir(files) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MigrationStateError);
      expect((error as MigrationStateError).state).toMatchObject({ failed: ["001_a"], pending: ["002_b"] });
    });
  }

  it("a failed row marked rolled back (`migrate resolve --rolled-back`): the migration is applied again", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({}));
    await recordRow(url, "001_a", { finished: false, rolledBack: true, started: "-1 hour" });
    expect((await migrate(url, migrationsDir(files))).applied).toEqual(["001_a", "002_b"]);
  });

  it("a finished row marked rolled back by hand: the migration is applied again, as deploy does", async () => {
    const url = freshUrl();
    await migrate(url, migrationsDir({}));
    await recordRow(url, "001_a", { finished: true, rolledBack: true, started: "-1 hour" });
    expect((await migrate(url, migrationsDir(files))).applied).toEqual(["001_a", "002_b"]);
    const rows = await query<{ finished: boolean; rolled_back: boolean }>(
      url,
      `SELECT finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back
       FROM "_prisma_migrations" WHERE migration_name = '001_a' ORDER BY started_at`,
    );
    expect(rows).toEqual([
      { finished: true, rolled_back: true },
      { finished: true, rolled_back: false },
    ]);
  });

  it("a failed row, then `migrate resolve --applied` (it marks that row rolled back and adds a finished one): applied", async () => {
    const url = freshUrl();
    const dir = migrationsDir(files);
    const checksum = readMigrations(dir)[0]?.checksum;
    await migrate(url, migrationsDir({}));
    await recordRow(url, "001_a", { finished: false, rolledBack: true, started: "-1 hour" });
    await recordRow(url, "001_a", { finished: true, rolledBack: false, started: "-1 minute", checksum });
    expect(await migrate(url, dir)).toEqual({ applied: ["002_b"], alreadyApplied: ["001_a"] });
  });
});

describe("the checksum recorded: Prisma's", () => {
  /** The verdict of the start-up check on `sql` applied, then its row's checksum set to `checksum`. */
  async function verdictWith(sql: string, checksum: string): Promise<string> {
    const url = freshUrl();
    const dir = migrationsDir({ "001_a": sql });
    await migrate(url, dir);
    await query(url, `UPDATE "_prisma_migrations" SET checksum = $1`, [checksum]);
    return verifyMigrations(url, { dir }).then(
      () => "applied",
      (error: unknown) => (error instanceof MigrationStateError ? `modified: ${error.state.modified}` : String(error)),
    );
  }
  const digest = (text: string) => createHash("sha256").update(text).digest();

  it("a checksum an old Prisma recorded without zero padding (prisma-engines#1887) is the file's, as Prisma matches it", async () => {
    // A script whose digest has a byte under 0x10, so the old format is shorter than 64 characters.
    let sql = "SELECT 1;\n";
    for (let n = 0; digest(sql).every((byte) => byte >= 0x10); n++) sql = `SELECT ${n};\n`;
    const unpadded = [...digest(sql)].map((byte) => byte.toString(16)).join("");
    expect(unpadded.length).toBeLessThan(64);
    expect(await verdictWith(sql, unpadded)).toBe("applied");
  });

  it("mixed line endings: the three variants Prisma tries (as read, CRLF to LF, every LF to CRLF), not others", async () => {
    const mixed = "SELECT 1;\r\nSELECT 2;\n";
    const hex = (text: string) => digest(text).toString("hex");
    expect(await verdictWith(mixed, hex("SELECT 1;\nSELECT 2;\n"))).toBe("applied");
    expect(await verdictWith(mixed, hex("SELECT 1;\r\r\nSELECT 2;\r\n"))).toBe("applied");
    // All-CRLF is none of Prisma's variants of this file: `prisma migrate status` calls it modified, and so do we.
    expect(await verdictWith(mixed, hex("SELECT 1;\r\nSELECT 2;\r\n"))).toBe("modified: 001_a");
  });

  it("a file that is not valid UTF-8 (a comment saved as GBK): sha256 of the text as Prisma reads it", async () => {
    const url = freshUrl();
    // "-- 订单" in GBK: invalid UTF-8, read by Prisma (and sent to PostgreSQL by both) with U+FFFD in their place.
    const bytes = Buffer.concat([
      Buffer.from("-- "),
      Buffer.from([0xb6, 0xa9, 0xb5, 0xa5]),
      Buffer.from("\nSELECT 1;\n"),
    ]);
    await migrate(url, migrationsDir({ "001_gbk": bytes }));
    const prisma = createHash("sha256").update(bytes.toString("utf8")).digest("hex");
    expect(await query(url, `SELECT checksum FROM "_prisma_migrations"`)).toEqual([{ checksum: prisma }]);
    await expect(verifyMigrations(url, { dir: migrationsDir({ "001_gbk": bytes }) })).resolves.toBeUndefined();
  });
});
