import { createHash } from "node:crypto";
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
  /**
   * How long a statement may run, ms (default 30 s): PostgreSQL cancels it then (`statement_timeout`: a clean error,
   * its transaction rolled back, the connection fine), and the client gives up 5 s later on a statement the server
   * never answers (`query_timeout`: a connection gone silent — a failover or a NAT drop that sends no reset, a frozen
   * host — outside a transaction the connection is then dropped). Without them such a statement was waited for
   * forever: a worker's batch never settled, its jobs kept their locks (so no other worker took them) and nothing
   * failed or logged. The server-side bound comes first so that a merely slow statement inside a transaction is
   * rolled back by the server: the client's own timeout there would hand the connection back to the pool with the
   * transaction still open. What a statement still commits is answered ALREADY on the retry.
   */
  queryTimeoutMs?: number;
  /**
   * Name every statement Prisma sends (after a hash of its text), so `pg` prepares it once per connection
   * and PostgreSQL reuses its plan instead of planning each execution. Worth it for a process running a
   * small, fixed set of statement shapes at high rate — the worker's one-statement apply took about as
   * long to plan as to execute (~1 ms each). Leave it off where query shapes vary without bound (ad-hoc
   * filters, IN lists of any length): each distinct text stays prepared on its connection until the
   * connection closes.
   */
  preparedStatements?: boolean;
}

const DEFAULT_QUERY_TIMEOUT_MS = 30_000;
/** The client waits this much longer than the server's statement_timeout before it gives up on its own, ms. */
const CLIENT_TIMEOUT_MARGIN_MS = 5_000;

/** A raw pg pool of the database (`Db.pool`, or one from `Db.openPool`). */
export type DbPool = pg.Pool;

/** A further pool on a Db's database (`Db.openPool`). */
export interface ExtraPoolOptions {
  /** Added to the Db's application name (`<name>:<purpose>`), so pg_stat_activity tells its connections apart. */
  purpose: string;
  max: number;
  /** PostgreSQL's statement_timeout on its connections, ms; the client's own bound follows it as on the main pool. */
  statementTimeoutMs: number;
  /** Wait for a free connection of this pool before failing, ms. */
  connectTimeoutMs: number;
}

/** One process's database handle: a Prisma client and the raw pg pool under it (for hot paths and the migrator). */
export interface Db {
  readonly prisma: PrismaClient;
  readonly pool: pg.Pool;
  readonly target: DatabaseTarget;
  /**
   * Another pool of connections made as the main pool's (same database, schema, UTC, keep-alive), with its own size
   * and statement timeout: for a lookup that its caller stops waiting for well before the main pool's statement
   * timeout (the dashboard's session check, 3 s). PostgreSQL cancels such a statement at that caller's bound, and its
   * connections are not the main pool's: lookups stuck on a locked table cannot take every connection the other
   * statements need. Its connections are made on first use. The caller ends it (`end()`), before `close()`.
   */
  openPool(options: ExtraPoolOptions): pg.Pool;
  close(): Promise<void>;
}

interface PoolSettings {
  max: number;
  connectTimeoutMs: number;
  applicationName: string;
  statementTimeoutMs: number;
}

/** Every connection of a Db, whichever of its pools: one place that says how they are made. */
function createPool(target: DatabaseTarget, settings: PoolSettings): pg.Pool {
  const pool = new pg.Pool({
    connectionString: target.connectionString,
    max: settings.max,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    query_timeout: settings.statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
    // TCP keep-alive probes also find a dead peer on a connection waiting in the pool.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: settings.applicationName,
    // Unqualified names in raw SQL resolve to the configured schema, like Prisma's generated queries do.
    // Columns are `timestamp without time zone` holding UTC (Prisma's convention), so database-side defaults
    // (now()) must be evaluated in UTC too, whatever the server's TimeZone setting is. The schema is quoted, as
    // Prisma and the migrator quote it: unquoted, PostgreSQL would fold `?schema=Shop` to `shop`, and raw SQL (the
    // payment statement) would miss the tables or, worse, find another schema's.
    options: `-c search_path="${target.schema}" -c TimeZone=UTC -c statement_timeout=${settings.statementTimeoutMs}`,
  });
  // An idle client losing its connection (PostgreSQL restart) emits 'error' on the pool; without a listener
  // that would crash the process. The pool discards the client and the next query reconnects.
  pool.on("error", () => undefined);
  return pool;
}

export function createDb(options: DbOptions): Db {
  const target = parseDatabaseUrl(options.url);
  const applicationName = options.applicationName ?? "wechatpay-notify";
  const pool = createPool(target, {
    max: options.poolMax ?? 10,
    connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
    applicationName,
    statementTimeoutMs: options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS,
  });
  const adapter = new PrismaPg(pool, {
    schema: target.schema,
    ...(options.preparedStatements ? { statementNameGenerator: statementName() } : {}),
  });
  const prisma = new PrismaClient({ adapter });
  return {
    prisma,
    pool,
    target,
    openPool: ({ purpose, ...settings }) =>
      createPool(target, { ...settings, applicationName: `${applicationName}:${purpose}` }),
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

/**
 * Resolves when PostgreSQL answers `SELECT 1` on a connection of its own within `timeoutMs` (connect and statement
 * each), rejects otherwise. Not through a pool: a pool whose connections are all busy (slow statements, a hot row's
 * lock) makes a database that answers look down.
 */
export async function probeDatabase(target: DatabaseTarget, timeoutMs: number): Promise<void> {
  const client = new pg.Client({
    connectionString: target.connectionString,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: "wechatpay-notify:probe",
  });
  // A connection lost after the answer would emit 'error' on a client nobody reads any more.
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("SELECT 1");
  } finally {
    // Ending a client whose connect failed rejects too; the probe's own outcome is what matters.
    await client.end().catch(() => undefined);
  }
}

/** `s_<16 hex>` from the SQL text, memoised: the same text always maps to the same prepared statement. */
function statementName(): (query: { sql: string }) => string {
  const names = new Map<string, string>();
  return ({ sql }) => {
    let name = names.get(sql);
    if (name === undefined) {
      name = `s_${createHash("sha1").update(sql).digest("hex").slice(0, 16)}`;
      names.set(sql, name);
    }
    return name;
  };
}
