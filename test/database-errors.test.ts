import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { type AddressInfo, createServer } from "node:net";
import { createDb, readMigrations } from "@wpn/db";
import { createTestDatabase, TEST_DATABASE_BASE_URL } from "@wpn/testing";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { explainDatabaseError, failureReport, oneLine } from "../scripts/database-errors.ts";
import { repoRoot } from "./support/processes.ts";

const context = {
  databaseUrl: "postgresql://postgres@127.0.0.1:5432/wechatpay_notify",
  osUser: "alice",
  rerun: "npm start",
};

/** pg's DatabaseError as the server sends it (fields as pg-protocol sets them). */
function serverError(code: string, message: string, routine: string): Error {
  return Object.assign(new Error(message), { severity: "FATAL", code, routine });
}

async function errorOf(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await work();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}

describe("explainDatabaseError (what npm start, db:migrate and db:prune print)", () => {
  it("a password asked for and none given (Debian/Ubuntu's scram-sha-256): how to set one, or trust 127.0.0.1", () => {
    // pg's own words when the server asks for SCRAM and the URL has no password: no SQLSTATE at all.
    const sasl = new Error("SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string");
    const md5 = serverError("28P01", 'password authentication failed for user "postgres"', "auth_failed");
    for (const error of [sasl, md5]) {
      const text = explainDatabaseError(error, context);
      expect(text).toContain('PostgreSQL at 127.0.0.1:5432 asks for a password for role "postgres"');
      expect(text).toContain(`sudo -u postgres psql -c "ALTER ROLE postgres PASSWORD '<password>'"`);
      expect(text).toContain("DATABASE_URL=postgresql://postgres:<password>@127.0.0.1:5432/wechatpay_notify");
      expect(text).toContain("DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:5432/wechatpay_notify");
      expect(text).toContain('"host all all 127.0.0.1/32 scram-sha-256" to trust');
      expect(text).toMatch(/Then run npm start again\.$/);
    }
  });

  it("a wrong password: correct it", () => {
    const error = serverError("28P01", 'password authentication failed for user "shop"', "auth_failed");
    const text = explainDatabaseError(error, { ...context, databaseUrl: "postgresql://shop:nope@db:5433/shop" });
    expect(text).toMatch(/^PostgreSQL at db:5433 refused DATABASE_URL's password for role "shop"/);
    expect(text).toContain("DATABASE_URL=postgresql://shop:<password>@db:5433/shop");
  });

  it("no role postgres (Homebrew: the superuser is the OS user): createuser, or DATABASE_URL as oneself", () => {
    const error = serverError("28000", 'role "postgres" does not exist', "InitializeSessionUserId");
    const text = explainDatabaseError(error, context);
    expect(text).toContain('PostgreSQL at 127.0.0.1:5432 has no role "postgres"');
    expect(text).toContain("createuser -s postgres");
    expect(text).toContain("DATABASE_URL=postgresql://alice@127.0.0.1:5432/wechatpay_notify");
    // The routine decides, not the (translatable) message: a server speaking Chinese is recognised too.
    const zh = serverError("28000", '角色 "postgres" 不存在', "InitializeSessionUserId");
    expect(explainDatabaseError(zh, context)).toBe(text);
    // Already connecting as oneself: only createuser is offered.
    const self = explainDatabaseError(error, { ...context, databaseUrl: "postgresql://alice@127.0.0.1/db" });
    expect(self).not.toContain("connect as yourself");
  });

  it("other refusals, no right to create the database, no database", () => {
    const hba = serverError(
      "28000",
      'no pg_hba.conf entry for host "10.0.0.9", user "postgres"',
      "ClientAuthentication",
    );
    expect(explainDatabaseError(hba, context)).toMatch(
      /^PostgreSQL at 127.0.0.1:5432 refused role "postgres": no pg_hba/,
    );
    const createdb = serverError("42501", "permission denied to create database", "createdb");
    expect(explainDatabaseError(createdb, context)).toContain("sudo -u postgres createdb -O postgres wechatpay_notify");
    const missing = serverError("3D000", 'database "wechatpay_notify" does not exist', "InitPostgres");
    expect(explainDatabaseError(missing, { ...context, rerun: "npm run db:prune" })).toBe(
      'PostgreSQL at 127.0.0.1:5432 has no database "wechatpay_notify": run npm run db:migrate (it creates the database and its tables) or fix DATABASE_URL, then run npm run db:prune again.',
    );
  });

  it("no PostgreSQL listening (db:migrate, db:prune): start it or fix DATABASE_URL", () => {
    // Before: "npm run db:migrate failed: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:5999".
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5999"), { code: "ECONNREFUSED" });
    const url = "postgresql://postgres@127.0.0.1:5999/wechatpay_notify";
    expect(explainDatabaseError(refused, { ...context, databaseUrl: url, rerun: "npm run db:migrate" })).toBe(
      "PostgreSQL at 127.0.0.1:5999 does not answer (ECONNREFUSED): start it (npm start starts a local one), or fix " +
        "DATABASE_URL if it runs elsewhere. Then run npm run db:migrate again.",
    );
  });

  it("a URL without a user while USER is unset (pg then sends none): add the user to DATABASE_URL", () => {
    // Before: the pg_hba.conf advice, for a server that never got as far as pg_hba.
    const error = serverError("28000", "no PostgreSQL user name specified in startup packet", "ProcessStartupPacket");
    const socket = "postgresql:///wechatpay_notify?host=/var/run/postgresql";
    expect(explainDatabaseError(error, { ...context, databaseUrl: socket })).toBe(
      [
        "DATABASE_URL names no user, and neither does the environment (USER is unset), so PostgreSQL got none. Name it:",
        "  DATABASE_URL=postgresql:///wechatpay_notify?host=/var/run/postgresql&user=postgres",
        "Then run npm start again.",
      ].join("\n"),
    );
    const tcp = explainDatabaseError(error, { ...context, databaseUrl: "postgresql://127.0.0.1:5432/shop" });
    expect(tcp).toContain("  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shop\n");
  });

  it("never quotes DATABASE_URL's password back, given in pg's ?password= either", () => {
    // pg takes the password from the query too. Before, a wrong one was taken for none ("DATABASE_URL gives none"),
    // and every suggestion quoted the query as it was: password included.
    const wrong = serverError("28P01", 'password authentication failed for user "shop"', "auth_failed");
    const url = "postgresql://shop@db:5433/shop?password=s3cret-in-query&sslmode=require";
    const refused = explainDatabaseError(wrong, { ...context, databaseUrl: url }) ?? "";
    expect(refused).toMatch(/^PostgreSQL at db:5433 refused DATABASE_URL's password for role "shop"/);
    expect(refused).toContain("DATABASE_URL=postgresql://shop:<password>@db:5433/shop?sslmode=require\n");
    const noUser = serverError("28000", "no PostgreSQL user name specified in startup packet", "ProcessStartupPacket");
    const socket = "postgresql:///shop?host=/var/run/postgresql&password=s3cret-in-query";
    const named = explainDatabaseError(noUser, { ...context, databaseUrl: socket }) ?? "";
    expect(named).toContain(
      "  DATABASE_URL=postgresql:///shop?host=/var/run/postgresql&password=<password>&user=postgres\n",
    );
    const tcp = explainDatabaseError(noUser, { ...context, databaseUrl: "postgresql://:s3cret-in-authority@db/shop" });
    expect(tcp).toContain("  DATABASE_URL=postgresql://postgres:<password>@db/shop\n");
    for (const text of [refused, named, tcp]) expect(text).not.toMatch(/s3cret/);
  });

  it("never quotes a password-like query parameter back either (libpq's sslpassword=, the client key's passphrase)", () => {
    const wrong = serverError("28P01", 'password authentication failed for user "shop"', "auth_failed");
    const url = "postgresql://shop:s3cret-pw@db:5433/shop?sslmode=require&sslpassword=s3cret-key&password=s3cret-q";
    const refused = explainDatabaseError(wrong, { ...context, databaseUrl: url }) ?? "";
    expect(refused).toContain(
      "DATABASE_URL=postgresql://shop:<password>@db:5433/shop?sslmode=require&sslpassword=<password>\n",
    );
    const noUser = serverError("28000", "no PostgreSQL user name specified in startup packet", "ProcessStartupPacket");
    const socket = "postgresql:///shop?host=/var/run/postgresql&sslpassword=s3cret-key";
    const named = explainDatabaseError(noUser, { ...context, databaseUrl: socket }) ?? "";
    expect(named).toContain(
      "  DATABASE_URL=postgresql:///shop?host=/var/run/postgresql&sslpassword=<password>&user=postgres\n",
    );
    for (const text of [refused, named]) expect(text).not.toMatch(/s3cret/);
  });

  it("anything else is one line with its code; the stack only at debug", () => {
    const unreachable = Object.assign(new Error("connect EHOSTUNREACH 10.0.0.9:5432"), { code: "EHOSTUNREACH" });
    expect(failureReport(unreachable, context, false)).toBe(
      "npm start failed: EHOSTUNREACH: connect EHOSTUNREACH 10.0.0.9:5432",
    );
    expect(failureReport(unreachable, context, true)).toContain("    at ");
    expect(oneLine(new Error("first\n\nlast"))).toBe("last");
  });

  it("recognises the errors pg and Prisma really raise (the local PostgreSQL)", async () => {
    const base = new URL(TEST_DATABASE_BASE_URL);
    const noRole = new URL(base);
    noRole.username = "wpn_no_such_role";
    noRole.password = "";
    const client = new pg.Client({ connectionString: noRole.toString() });
    const roleError = await errorOf(() => client.connect());
    const ctx = { ...context, databaseUrl: noRole.toString() };
    expect(explainDatabaseError(roleError, ctx)).toContain('has no role "wpn_no_such_role"');

    // What db:prune met on a database nobody created: Prisma's P2010 around the server's 3D000.
    const noDb = new URL(base);
    noDb.pathname = "/wpn_no_such_database";
    const db = createDb({ url: noDb.toString(), poolMax: 1, applicationName: "test:database-errors" });
    try {
      const dbError = await errorOf(() => db.prisma.$queryRaw`SELECT 1`);
      expect(explainDatabaseError(dbError, { ...ctx, databaseUrl: noDb.toString() })).toContain(
        'has no database "wpn_no_such_database": run npm run db:migrate',
      );
      expect(oneLine(dbError)).toBe('3D000: database "wpn_no_such_database" does not exist');
    } finally {
      await db.close();
    }
    const closed = new URL(base);
    closed.port = "1";
    const unreachable = createDb({ url: closed.toString(), poolMax: 1, applicationName: "test:database-errors" });
    try {
      const error = await errorOf(() => unreachable.prisma.$queryRaw`SELECT 1`);
      // What db:prune meets: Prisma's kind for the refused connection.
      expect(explainDatabaseError(error, { ...ctx, databaseUrl: closed.toString() })).toMatch(
        new RegExp(`^PostgreSQL at ${closed.hostname}:1 does not answer \\(DatabaseNotReachable\\): start it`),
      );
      expect(oneLine(error)).toBe(`DatabaseNotReachable: Can't reach database server at ${closed.hostname}:1`);
    } finally {
      await unreachable.close();
    }
  });

  it("npm run db:migrate prints the steps for a role the server does not have, without a stack trace", () => {
    const url = new URL(TEST_DATABASE_BASE_URL);
    url.username = "wpn_no_such_role";
    url.password = "";
    const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/migrate.ts"], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: url.toString(), LOG_LEVEL: "info" },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^PostgreSQL at .* has no role "wpn_no_such_role" \(DATABASE_URL's user\)/);
    expect(run.stderr).toMatch(/Then run npm run db:migrate again\.\n$/);
    expect(run.stderr).not.toContain("    at ");
  });

  it("npm run db:prune against a port that takes the connection and never answers: DATABASE_CONNECT_TIMEOUT", async () => {
    // A port that accepts and says nothing, as a hung server or a proxy whose PostgreSQL is gone. The kernel completes
    // the handshake from the listen backlog while spawnSync holds this process.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/prune.ts", "--older-than", "30d"], {
        cwd: repoRoot,
        env: { ...process.env, DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/x`, LOG_LEVEL: "info" },
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(run.stderr).toMatch(
        new RegExp(`^PostgreSQL at 127\\.0\\.0\\.1:${port} did not answer within 10 s \\(DATABASE_CONNECT_TIMEOUT\\)`),
      );
      expect(run.stderr).toMatch(/fix DATABASE_URL\. Then run npm run db:prune again\.\n$/);
      expect(run.status).toBe(1);
    } finally {
      silent.close();
    }
  });

  // The README's "another service on the port": one that answers and closes (an HTTP server, a proxy, the dashboard's
  // own port typed for PostgreSQL's) made pg say "Connection terminated unexpectedly", printed as the whole message —
  // no address, no DATABASE_URL — where a silent one gets the explained DATABASE_CONNECT_TIMEOUT. How it closes decides
  // what pg sees: a close after reading the startup packet ends the stream ("Connection terminated unexpectedly"), a
  // close with the packet unread, or an abortive one, resets it (ECONNRESET). A server that closes on accept does
  // either, by whether the packet came first (measured under load: a reset in 2 of 4 runs), so each is made here on
  // purpose.
  it("npm run db:prune against a port whose server closes the connection: names the address and DATABASE_URL", async () => {
    const ends = createServer((socket) => socket.once("data", () => socket.end()));
    const resets = createServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    const prune = async (server: ReturnType<typeof createServer>) => {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const { port } = server.address() as AddressInfo;
      // Not spawnSync: this process must run the server's handler that closes the connection.
      const child = spawn(process.execPath, ["--import", "tsx", "scripts/prune.ts", "--older-than", "30d"], {
        cwd: repoRoot,
        env: { ...process.env, DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/x`, LOG_LEVEL: "info" },
      });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString("utf8");
      });
      const status = await new Promise<number | null>((resolve) => child.once("close", resolve));
      return { port, status, stderr };
    };
    try {
      const [ended, reset] = await Promise.all([prune(ends), prune(resets)]);
      for (const [run, reason] of [
        [ended, "Connection terminated unexpectedly"],
        [reset, "read ECONNRESET"],
      ] as const) {
        expect(run.stderr).toMatch(
          new RegExp(`^PostgreSQL at 127\\.0\\.0\\.1:${run.port} closed the connection \\(${reason}\\)`),
        );
        expect(run.stderr).toMatch(/fix DATABASE_URL\. Then run npm run db:prune again\.\n$/);
        expect(run.status).toBe(1);
      }
    } finally {
      ends.close();
      resets.close();
    }
  }, 60_000);

  it("npm run db:migrate on a migrated database: one line, without a gap for the migrations it did not apply", async () => {
    const database = await createTestDatabase("migrate_script");
    try {
      const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/migrate.ts"], {
        cwd: repoRoot,
        env: { ...process.env, DATABASE_URL: database.url, LOG_LEVEL: "info" },
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(run.status, run.stderr).toBe(0);
      // Before: "applied 0 migration(s) ; 20 already applied".
      expect(run.stdout).toBe(`applied 0 migration(s); ${readMigrations().length} already applied\n`);
    } finally {
      await database.drop();
    }
  });

  it("npm run db:migrate with a URL without a user and USER unset: names the user to add", () => {
    const { USER: _user, ...environment } = process.env;
    const url = new URL(TEST_DATABASE_BASE_URL);
    url.username = "";
    url.password = "";
    const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/migrate.ts"], {
      cwd: repoRoot,
      env: { ...environment, DATABASE_URL: url.toString() },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^DATABASE_URL names no user, and neither does the environment \(USER is unset\)/);
    url.username = "postgres";
    expect(run.stderr).toContain(`  DATABASE_URL=${url}\n`);
  });

  it("npm run db:migrate with a URL without a user and its password in ?password=: the password is not printed", () => {
    const { USER: _user, ...environment } = process.env;
    const password = `pg-pw-${randomBytes(8).toString("hex")}`;
    const url = new URL(TEST_DATABASE_BASE_URL);
    url.username = "";
    url.password = "";
    const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/migrate.ts"], {
      cwd: repoRoot,
      env: { ...environment, DATABASE_URL: `${url}?password=${password}` },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(`${run.stdout}${run.stderr}`).not.toContain(password);
    url.username = "postgres";
    expect(run.stderr).toContain(`  DATABASE_URL=${url}?password=<password>\n`);
  });
});
