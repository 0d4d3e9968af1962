import { randomBytes } from "node:crypto";
import { createDb, type Db, ensureDatabase, migrate, parseDatabaseUrl, quoteIdent } from "@wpn/db";
import pg from "pg";

/**
 * Tests share one database; each test file works in a schema of its own, so files can run in parallel.
 * TEST_DATABASE_URL points the suite at another PostgreSQL (e.g. Docker Compose's, which wants a password:
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

/** Creates a fresh schema with every migration applied. */
export async function createTestDatabase(label = "t"): Promise<TestDatabase> {
  const schema = `${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(5).toString("hex")}`;
  const url = withSchema(TEST_DATABASE_BASE_URL, schema);
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
