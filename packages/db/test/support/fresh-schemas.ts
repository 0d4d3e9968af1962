import { TEST_DATABASE_BASE_URL, withSchema } from "@wpn/testing";
import pg from "pg";
import { afterAll } from "vitest";

/**
 * URLs of schemas that do not exist yet (`<prefix>_<random>`), for tests of what happens to an empty database; every
 * schema handed out is dropped after the file's tests. Call at the top level of a test file.
 */
export function freshSchemas(prefix: string): () => string {
  const schemas: string[] = [];
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
