/**
 * A PostgreSQL URL as Prisma users write it: `postgresql://user@host:5432/db?schema=name`. The `schema`
 * parameter is Prisma's convention, unknown to `pg`, so it is split off here and applied as `search_path`.
 */
export interface DatabaseTarget {
  /** The URL without the `schema` parameter, as `pg` accepts it. */
  readonly connectionString: string;
  /** PostgreSQL schema holding the tables (default `public`). */
  readonly schema: string;
  /** Database name from the URL path. */
  readonly database: string;
}

export function parseDatabaseUrl(url: string): DatabaseTarget {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get("schema") ?? "public";
  parsed.searchParams.delete("schema");
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "postgres";
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw new Error(`DATABASE_URL schema "${schema}" must be a plain identifier`);
  }
  return { connectionString: parsed.toString(), schema, database };
}

/** Quotes an identifier for SQL text (schema and database names cannot be bind parameters). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
