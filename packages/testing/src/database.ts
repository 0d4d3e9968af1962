import { randomBytes } from "node:crypto";
import { createDb, type Db, ensureDatabase, migrate, parseDatabaseUrl, quoteIdent } from "@wpn/db";
import pg from "pg";

/**
 * Tests share one database (and one more per vitest worker: `workerDatabaseUrl`); each test file works in a schema of
 * its own, so files can run in parallel. TEST_DATABASE_URL points the suite at another PostgreSQL (e.g. Docker
 * Compose's, which wants a password:
 * postgresql://postgres:postgres@127.0.0.1:5432/wechatpay_notify_test). Read from process.env here, outside
 * packages/config, on purpose: this is the test suite's own setting, never the application's, and DATABASE_URL
 * must not be it (a developer's .env points that at the development database, which tests must not touch).
 */
export const TEST_DATABASE_BASE_URL =
  process.env.TEST_DATABASE_URL || "postgresql://postgres@127.0.0.1:5432/wechatpay_notify_test";

export interface TestDatabase {
  /** DATABASE_URL for processes under test (`…?schema=t_xxx`). */
  readonly url: string;
  readonly schema: string;
  readonly db: Db;
  /** Closes the pool and drops the schema. */
  drop(): Promise<void>;
}

/**
 * `base` with `?schema=` set — added to a query it may already have (`?sslmode=…`, a socket's `?host=…`), where a
 * second `?` would swallow it into the previous value and every file would share the `public` schema.
 */
export function withSchema(base: string, schema: string): string {
  const url = new URL(base);
  if (url.searchParams.has("schema")) {
    throw new Error(`TEST_DATABASE_URL must not choose a schema (each test file makes its own): ${base}`);
  }
  url.searchParams.set("schema", schema);
  return url.toString();
}

/**
 * The database in which `createTestDatabase` makes this process's schemas: TEST_DATABASE_URL's with `_w<n>` added in a
 * vitest worker (VITEST_POOL_ID, 1 to the number of workers, set by vitest in each of its worker processes), the
 * database itself elsewhere. migrate() holds the migration lock for its whole run, and that advisory lock is one per
 * database: while every file migrated its schema in the one database, a file's migrations waited for those of the
 * file running beside it (measured on a loaded 2-core machine: 0.6 s a schema alone, 1.1 s with two at once, 0.8 s
 * with two at once in two databases).
 */
export function workerDatabaseUrl(base: string = TEST_DATABASE_BASE_URL): string {
  const pool = process.env.VITEST_POOL_ID;
  if (!pool) return base;
  const url = new URL(base);
  url.pathname = `/${encodeURIComponent(`${parseDatabaseUrl(base).database}_w${pool}`)}`;
  return url.toString();
}

/** Creates a fresh schema with every migration applied, in this worker's database (`workerDatabaseUrl`). */
export async function createTestDatabase(label = "t"): Promise<TestDatabase> {
  const schema = `${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(5).toString("hex")}`;
  const url = withSchema(workerDatabaseUrl(), schema);
  await ensureDatabase(url);
  await migrate(url);
  const db = createDb({ url, poolMax: 20, applicationName: `test:${schema}` });
  return {
    url,
    schema,
    db,
    async drop() {
      await db.close();
      const client = new pg.Client({ connectionString: parseDatabaseUrl(url).connectionString });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
