import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { type DatabaseTarget, parseDatabaseUrl } from "./database-url.ts";
import { PrismaClient } from "./generated/client.ts";

export interface DbOptions {
  url: string;
  /** pg pool size (Prisma 7's pg adapter uses the pool as given; its default of 10 is kept explicit here). */
  poolMax?: number;
  /** Wait for a free pooled connection before failing, ms. pg's default is 0 = wait forever, which hides outages. */
  connectTimeoutMs?: number;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
}

/** One process's database handle: a Prisma client and the raw pg pool under it (for hot paths and the migrator). */
export interface Db {
  readonly prisma: PrismaClient;
  readonly pool: pg.Pool;
  readonly target: DatabaseTarget;
  close(): Promise<void>;
}

export function createDb(options: DbOptions): Db {
  const target = parseDatabaseUrl(options.url);
  const pool = new pg.Pool({
    connectionString: target.connectionString,
    max: options.poolMax ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    application_name: options.applicationName ?? "wechatpay-notify",
    // Unqualified names in raw SQL resolve to the configured schema, like Prisma's generated queries do.
    // Columns are `timestamp without time zone` holding UTC (Prisma's convention), so database-side defaults
    // (now()) must be evaluated in UTC too, whatever the server's TimeZone setting is.
    options: `-c search_path=${target.schema} -c TimeZone=UTC`,
  });
  // An idle client losing its connection (PostgreSQL restart) emits 'error' on the pool; without a listener
  // that would crash the process. The pool discards the client and the next query reconnects.
  pool.on("error", () => undefined);
  const adapter = new PrismaPg(pool, { schema: target.schema });
  const prisma = new PrismaClient({ adapter });
  return {
    prisma,
    pool,
    target,
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
