import { ensureDatabase } from "@wpn/db";
import { TEST_DATABASE_BASE_URL, withSchema } from "@wpn/testing";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";

/**
 * URLs of schemas that do not exist yet (`<prefix>_<random>`), for tests of what happens to an empty database; every
 * schema handed out is dropped after the file's tests. Call at the top level of a test file. The test database itself
 * is created first when missing: on a fresh cluster no other file may have made it yet (files run in parallel).
 */
export function freshSchemas(prefix: string): () => string {
  const schemas: string[] = [];
  beforeAll(() => ensureDatabase(TEST_DATABASE_BASE_URL));
  afterAll(async () => {
    const client = new pg.Client({ connectionString: TEST_DATABASE_BASE_URL });
    await client.connect();
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  });
  return () => {
    const schema = `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
    schemas.push(schema);
    return withSchema(TEST_DATABASE_BASE_URL, schema);
  };
}
