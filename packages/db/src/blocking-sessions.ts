import pg from "pg";

/**
 * A session another one waits for, as pg_stat_activity shows it: what an operator needs to find it (pid,
 * application_name) and to judge it (state, since when). The columns other than pid are null when the session ended
 * meanwhile, and state, the times and the query are null or hidden (`<insufficient privilege>`) for another role's
 * session unless this role has pg_read_all_stats.
 */
export interface BlockingSession {
  /** The backend's pid (pg_terminate_backend takes it); 0 for a prepared transaction (pg_prepared_xacts). */
  pid: number;
  applicationName: string | null;
  /** `active`, `idle in transaction`, … */
  state: string | null;
  /** When its transaction started: it has held its locks since. */
  transactionStart: Date | null;
  queryStart: Date | null;
  /** Its latest statement, its literals masked (statementShape), whitespace folded, cut to QUERY_CHARS characters. */
  query: string | null;
}

/** Enough of a statement to recognise it (a report, a dashboard page) in one line of a log. */
const QUERY_CHARS = 120;

/**
 * The tokens of SQL text whose quotes decide what is a literal: quoted identifiers (kept: a `'` inside one starts
 * nothing), escape strings (`E'…'`, where `\'` does not end it), standard strings (`''` inside) and dollar-quoted
 * bodies (`$tag$…$tag$`). Each may be cut off by the end of the text: pg_stat_activity keeps the first
 * track_activity_query_size bytes of a statement (1 KiB by default).
 */
const SQL_QUOTED =
  /("(?:[^"]|"")*"?)|(\b[Ee]'(?:[^'\\]|\\[\s\S]|'')*'?)|('(?:[^']|'')*'?)|(\$([A-Za-z_][A-Za-z0-9_]*)?\$)[\s\S]*?(?:\$\5\$|$)/g;

/**
 * A statement as a log line may show it: what it does, never the values it was written with. The blocking session is
 * anyone's — an operator's psql session that set a Merchant row's key by hand (README: those rows are written with
 * SQL) shows `UPDATE "Merchant" SET "apiV3Key" = '<the key>'` — and its statement is printed on stderr and logged
 * (MIGRATION_RETRY, MIGRATION_BLOCKED, MIGRATION_LOCK_WAIT). Every string literal becomes `'…'` (`E'…'`, `$tag$…$tag$`);
 * identifiers, keywords, numbers and bind parameters (`$1`) stay.
 */
export function statementShape(sql: string): string {
  return sql.replace(SQL_QUOTED, (token, identifier, escaped, _standard, dollar: string | undefined) => {
    if (identifier !== undefined) return token;
    if (escaped !== undefined) return `${token[0]}'…'`;
    if (dollar !== undefined) return `${dollar}…${dollar}`;
    return "'…'";
  });
}

/** The sessions whose pids `pidsSql` (an int[] expression of `params`) yields, oldest transaction first. */
export async function readSessions(
  client: pg.ClientBase,
  pidsSql: string,
  params: readonly unknown[],
): Promise<BlockingSession[]> {
  const { rows } = await client.query<{
    pid: number;
    application_name: string | null;
    state: string | null;
    xact_start: Date | null;
    query_start: Date | null;
    query: string | null;
  }>(
    // The whole text (at most track_activity_query_size): its literals are masked before it is cut.
    `SELECT p.pid, a.application_name, a.state, a.xact_start, a.query_start, a.query
     FROM unnest(${pidsSql}) AS p(pid) LEFT JOIN pg_stat_activity a ON a.pid = p.pid
     ORDER BY a.xact_start NULLS LAST, p.pid`,
    [...params],
  );
  return rows.map((row) => ({
    pid: row.pid,
    applicationName: row.application_name,
    state: row.state,
    transactionStart: row.xact_start,
    queryStart: row.query_start,
    query:
      row.query === null ? null : [...statementShape(row.query).replace(/\s+/g, " ")].slice(0, QUERY_CHARS).join(""),
  }));
}

/** The sessions `pid` waits for right now (pg_blocking_pids: holders of a conflicting lock, and those queued ahead). */
export function readBlockingSessions(client: pg.ClientBase, pid: number): Promise<BlockingSession[]> {
  return readSessions(client, "pg_blocking_pids($1)", [pid]);
}

/** `pid 4242 (application_name "report", state "idle in transaction", transaction started …, query started …: "…")`. */
export function describeSession(session: BlockingSession): string {
  if (session.pid === 0) return "a prepared transaction (see pg_prepared_xacts)";
  const facts = [
    `application_name "${session.applicationName ?? "unknown"}"`,
    `state "${session.state ?? "unknown"}"`,
    ...(session.transactionStart ? [`transaction started ${session.transactionStart.toISOString()}`] : []),
    ...(session.queryStart ? [`query started ${session.queryStart.toISOString()}`] : []),
  ];
  const query = session.query ? `: "${session.query}"` : "";
  return `pid ${session.pid} (${facts.join(", ")}${query})`;
}

/** What a watch saw: the sessions last seen blocking, and why none could be read, if so. */
export interface BlockerSample {
  sessions: BlockingSession[];
  /** Connecting or reading failed: the sessions are unknown (the watched work goes on regardless). */
  error?: string;
}

/** `describeSession` of each, or why there is none to name. */
export function describeBlockers(sample: BlockerSample): string {
  if (sample.sessions.length > 0) return sample.sessions.map(describeSession).join("; ");
  if (sample.error !== undefined) return `a session that could not be read (${sample.error})`;
  return "a session that was not seen (its wait was shorter than the sampling interval)";
}

/**
 * How long the watch connection may take to open, and any one of its statements to answer, ms. Past that (a pool such
 * as PgBouncer holding the connection back, a server too busy to answer) it is given up: the watched work goes on, and
 * what it reports says the blockers could not be read, and why. Within it, a first attempt waits for the connection.
 */
const WATCH_TIMEOUT_MS = 5_000;

/**
 * Finds out who blocks a session while it waits for a lock. The waiting session cannot ask — it is waiting — and once
 * its lock_timeout fires the blocker is no longer linked to it, so a second connection samples pg_blocking_pids while
 * the work runs. That connection is opened by `open`, before the work whose waits it watches starts: opened during
 * the wait, its connect (long on a busy host) ate into a short lock_timeout and left no time to sample. It is kept for
 * the rest of the run; `close` ends it.
 */
export class BlockerWatch {
  readonly #config: pg.ClientConfig;
  #opening: Promise<void> | undefined;
  #client: pg.Client | undefined;
  #error: string | undefined;

  /** `config`: the watch connection's (the watched session's database, an application_name of its own). */
  constructor(
    config: pg.ClientConfig,
    private readonly pid: number,
  ) {
    this.#config = { ...config, connectionTimeoutMillis: WATCH_TIMEOUT_MS, query_timeout: WATCH_TIMEOUT_MS };
  }

  /**
   * Connects and reads the blockers once (none yet: the query is known to work before it matters); the first call
   * does, later ones wait for it. Never rejects: a failure is remembered and reported by every `stop`, and the watch
   * then samples nothing.
   */
  open(): Promise<void> {
    this.#opening ??= this.#open();
    return this.#opening;
  }

  /**
   * Samples every `everyMs` from now until the returned `stop`, which answers the last non-empty sample (waits of the
   * work end and start again: the latest blockers are the ones that made it fail). Samples only on the connection
   * `open` made: each costs one short query on it, and one sample taken while the work waits is enough to name them.
   */
  watch(everyMs: number): { stop(): Promise<BlockerSample> } {
    const stopped = new AbortController();
    let sessions: BlockingSession[] = [];
    const sampling = (async () => {
      while (await pause(everyMs, stopped.signal)) {
        const found = await this.#sample();
        if (found === undefined) return;
        if (found.length > 0) sessions = found;
      }
    })();
    return {
      stop: async () => {
        stopped.abort();
        await sampling;
        return this.#error === undefined ? { sessions } : { sessions, error: this.#error };
      },
    };
  }

  async close(): Promise<void> {
    await this.#opening;
    await this.#client?.end();
  }

  async #open(): Promise<void> {
    const client = new pg.Client(this.#config);
    // A connection lost between two samples: the next sample fails with it, which is what #error keeps.
    client.on("error", (error) => {
      this.#error ??= error.message;
    });
    try {
      await client.connect();
      await readBlockingSessions(client, this.pid);
      this.#client = client;
    } catch (error) {
      this.#error = `the watch connection did not open: ${error instanceof Error ? error.message : String(error)}`;
      // Ends a connection that opened but could not read (or a connect still under way); its own failure adds nothing.
      await client.end().catch(() => undefined);
    }
  }

  /** The blockers now; undefined without the watch connection, or once it failed (remembered in #error). */
  async #sample(): Promise<BlockingSession[] | undefined> {
    if (this.#client === undefined || this.#error !== undefined) return undefined;
    try {
      return await readBlockingSessions(this.#client, this.pid);
    } catch (error) {
      this.#error = error instanceof Error ? error.message : String(error);
      return undefined;
    }
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(true), ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve(false);
      },
      { once: true },
    );
  });
}
