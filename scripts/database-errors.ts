// What the scripts (`npm start`, db:migrate, db:prune) print when PostgreSQL refuses them: for the failures a fresh
// machine meets — a stock PostgreSQL that wants a password, or has no role "postgres" — one message with the steps
// that fix it; for anything else one line with the error's code. No stack trace either way (LOG_LEVEL=debug or
// trace adds it): these are set-up problems, not bugs.
import { ConfigError, type Environment, PASSWORD_PLACEHOLDER as PASSWORD, withoutQueryPasswords } from "@wpn/config";
import { MIGRATE_CONNECT_TIMEOUT_MS } from "@wpn/db";

export interface DatabaseErrorContext {
  /** The DATABASE_URL the script used (host, port, user and database are quoted back). */
  readonly databaseUrl: string;
  /** The operating-system user: pg connects as them when the URL names nobody, and Homebrew's superuser is them. */
  readonly osUser: string;
  /** The command to run again once fixed, e.g. `npm start`. */
  readonly rerun: string;
}

/** What PostgreSQL (directly through pg, or wrapped by Prisma's driver adapter) said. */
interface Facts {
  /** SQLSTATE, e.g. 28P01; or Prisma's adapter's kind (DatabaseNotReachable), a Node errno name, Prisma's P####. */
  code?: string;
  /** The server's function that raised it: stable across server languages, unlike the message. */
  routine?: string;
  message: string;
}

/** Prisma keeps PostgreSQL's own code and message in `meta.driverAdapterError.cause` (originalCode/-Message). */
function factsOf(error: unknown): Facts {
  const e = (typeof error === "object" && error !== null ? error : {}) as Record<string, unknown>;
  const adapter = (e.meta as { driverAdapterError?: { cause?: Record<string, unknown> } } | undefined)
    ?.driverAdapterError?.cause;
  const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);
  // Without a server's SQLSTATE (it was never reached), the adapter's kind says more than Prisma's P2010.
  const code = str(adapter?.originalCode) ?? str(adapter?.kind) ?? str(e.code);
  const routine = str(e.routine);
  const last = lastLine(error instanceof Error ? error.message : String(error));
  const message = str(adapter?.originalMessage) ?? /Message: `(.*)`$/.exec(last)?.[1] ?? last;
  return { ...(code === undefined ? {} : { code }), ...(routine === undefined ? {} : { routine }), message };
}

/** Prisma's messages run over several lines (the call, the query); the last one says what happened. */
function lastLine(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  return lines.at(-1) ?? text;
}

/**
 * `url` with its password — in the authority, or in the query (pg's `?password=`, libpq's `sslpassword=`, anything
 * withoutQueryPasswords takes for one) — shown as PASSWORD: the messages quoting DATABASE_URL back are printed, onto
 * terminals, CI logs and issue reports. The rest stays as written.
 */
function withoutPassword(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== "") parsed.password = PASSWORD;
  if (parsed.search !== "") parsed.search = withoutQueryPasswords(parsed.search.slice(1));
  return parsed.toString().replaceAll("%3Cpassword%3E", PASSWORD);
}

/** One line for an error nobody explained: `CODE: message`. */
export function oneLine(error: unknown): string {
  const { code, message } = factsOf(error);
  return code === undefined ? message : `${code}: ${message}`;
}

/** A role name as psql wants it inside a double-quoted shell argument (plain names need no quoting). */
function roleSql(role: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(role) ? role : `\\"${role.replaceAll('"', '""')}\\"`;
}

/**
 * The message for a failure a stock PostgreSQL produces, or undefined for any other error. Cases: a password asked
 * for and none given (Debian/Ubuntu packages and Docker's image authenticate TCP connections with scram-sha-256),
 * a wrong password (28P01), no such role (28000 from InitializeSessionUserId: Homebrew names the superuser after the
 * OS user), another refusal by pg_hba.conf (28000), no right to create the database (42501 from createdb), no
 * database (3D000: db:prune before anything created it), no server listening (ECONNREFUSED), and no user at all (28000
 * from ProcessStartupPacket: a URL without one, and USER unset).
 */
export function explainDatabaseError(error: unknown, context: DatabaseErrorContext): string | undefined {
  if (!URL.canParse(context.databaseUrl)) return undefined;
  const { code, routine, message } = factsOf(error);
  const url = new URL(context.databaseUrl);
  const where = `PostgreSQL at ${url.hostname || "the local socket"}:${url.port || "5432"}`;
  const role = decodeURIComponent(url.username) || context.osUser;
  const database = decodeURIComponent(url.pathname.slice(1)) || role;
  const then = `Then run ${context.rerun} again.`;
  /** DATABASE_URL with another user and, when given, password (one place for it: the authority); withoutPassword. */
  const withUser = (user: string, password?: string) => {
    const u = new URL(withoutPassword(context.databaseUrl));
    u.username = user;
    if (password !== undefined) {
      u.password = password;
      u.searchParams.delete("password");
    }
    // `<password>` stays readable in the suggestion rather than percent-encoded.
    return u.toString().replaceAll("%3Cpassword%3E", PASSWORD);
  };

  if (code === "ECONNREFUSED" || code === "DatabaseNotReachable") {
    // pg's errno, or Prisma's adapter's kind for it (db:prune): nothing listens there.
    return `${where} does not answer (${code}): start it (npm start starts a local one), or fix DATABASE_URL if it runs elsewhere. ${then}`;
  }
  if (code === "DATABASE_CONNECT_TIMEOUT") {
    return `${where} did not answer within ${MIGRATE_CONNECT_TIMEOUT_MS / 1_000} s (${code}): something there takes the connection but does not log in — a hung server, a proxy whose PostgreSQL is gone, or another service on that port. Check the server, or fix DATABASE_URL. ${then}`;
  }
  // pg's words (it sets no code) when the server end closes the socket, or the socket's ECONNRESET when it resets it
  // (a server that closes with the startup packet unread, or abortively): something answered at DATABASE_URL and hung
  // up — another service on that port, a proxy, a server shutting down. Which of the two a server that closes at once
  // causes depends on whether the packet reached it first. Not a timeout: the other case of the README's "another
  // service on the port", printed bare before.
  if ((code === undefined && message === "Connection terminated unexpectedly") || code === "ECONNRESET") {
    return `${where} closed the connection (${message}): another service on that port, a proxy whose PostgreSQL is gone, or a server that shut down or drops this client (its log says why). Check the server, or fix DATABASE_URL. ${then}`;
  }
  if (code === "28000" && (routine === "ProcessStartupPacket" || /no PostgreSQL user name specified/.test(message))) {
    // pg names the user from USER when the URL has none: a service, cron or container without USER sends none.
    const named =
      url.hostname === ""
        ? `${withoutPassword(context.databaseUrl)}${url.search ? "&" : "?"}user=postgres`
        : withUser("postgres");
    return [
      "DATABASE_URL names no user, and neither does the environment (USER is unset), so PostgreSQL got none. Name it:",
      `  DATABASE_URL=${named}`,
      then,
    ].join("\n");
  }
  // pg takes it from the query too: a wrong one there is not "none given".
  const noPassword = url.password === "" && !url.searchParams.has("password");
  if (/client password must be a string/.test(message) || (code === "28P01" && noPassword)) {
    return [
      `${where} asks for a password for role "${role}", and DATABASE_URL gives none`,
      "(Debian/Ubuntu's packages and Docker's image want one for TCP connections). Either:",
      "  - give the role a password (your choice) and put it into DATABASE_URL:",
      `      sudo -u postgres psql -c "ALTER ROLE ${roleSql(role)} PASSWORD '<password>'"`,
      `      and in .env: DATABASE_URL=${withUser(role, PASSWORD)}`,
      "    (Docker Compose's PostgreSQL has one already:",
      `      DATABASE_URL=${withUser("postgres", "postgres")})`,
      "  - or, on a development machine only, let connections from this machine in without a password: in",
      "    pg_hba.conf (its path: sudo -u postgres psql -tAc 'SHOW hba_file') change the method of the line",
      '    "host all all 127.0.0.1/32 scram-sha-256" to trust, then: sudo systemctl reload postgresql',
      then,
    ].join("\n");
  }
  if (code === "28P01") {
    return [
      `${where} refused DATABASE_URL's password for role "${role}". Correct it in .env, or set a new one:`,
      `  sudo -u postgres psql -c "ALTER ROLE ${roleSql(role)} PASSWORD '<password>'"`,
      `  and in .env: DATABASE_URL=${withUser(role, PASSWORD)}`,
      then,
    ].join("\n");
  }
  if (code === "28000" && (routine === "InitializeSessionUserId" || /^role ".*" does not exist$/.test(message))) {
    const steps = [
      `${where} has no role "${role}" (DATABASE_URL's user); Homebrew's and Postgres.app's PostgreSQL`,
      "name their superuser after your login instead. Either:",
      `  - create the role: createuser -s ${role}   (Debian/Ubuntu: sudo -u postgres createuser -s ${role})`,
    ];
    if (role !== context.osUser) {
      steps.push(`  - or connect as yourself: in .env, DATABASE_URL=${withUser(context.osUser)}`);
    }
    return [...steps, then].join("\n");
  }
  if (code === "28000") {
    return [
      `${where} refused role "${role}": ${message}`,
      "Its pg_hba.conf (path: sudo -u postgres psql -tAc 'SHOW hba_file') needs a line letting this machine in, e.g.",
      '  "host all all 127.0.0.1/32 scram-sha-256", then: sudo systemctl reload postgresql',
      then,
    ].join("\n");
  }
  if (code === "42501" && (routine === "createdb" || /create database/i.test(message))) {
    return [
      `Database "${database}" does not exist and role "${role}" may not create databases. Either:`,
      `  - create it once as a superuser: sudo -u postgres createdb -O ${role} ${database}`,
      `  - or allow the role to: sudo -u postgres psql -c "ALTER ROLE ${roleSql(role)} CREATEDB"`,
      then,
    ].join("\n");
  }
  if (code === "3D000") {
    return `${where} has no database "${database}": run npm run db:migrate (it creates the database and its tables) or fix DATABASE_URL, then run ${context.rerun} again.`;
  }
  return undefined;
}

/**
 * What a script prints for an error that ends it: the explanation of `explainDatabaseError`, else one line; the
 * stack only when `debug` (LOG_LEVEL debug or trace).
 */
export function failureReport(error: unknown, context: DatabaseErrorContext, debug: boolean): string {
  const text = explainDatabaseError(error, context) ?? `${context.rerun} failed: ${oneLine(error)}`;
  const stack = error instanceof Error ? error.stack : undefined;
  return debug && stack !== undefined ? `${text}\n${stack}` : text;
}

/**
 * The end of a script that failed: `configuration error: …` and status 78 (EX_CONFIG, as the apps) for a bad
 * setting, else `failureReport` and status 1.
 */
export function exitOnFailure(error: unknown, context: DatabaseErrorContext, env: Environment): never {
  if (error instanceof ConfigError) {
    console.error(`configuration error: ${error.message}`);
    process.exit(78);
  }
  console.error(failureReport(error, context, ["debug", "trace"].includes(env.LOG_LEVEL ?? "")));
  process.exit(1);
}
