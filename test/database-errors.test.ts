import { spawnSync } from "node:child_process";
import { createDb } from "@wpn/db";
import { TEST_DATABASE_BASE_URL } from "@wpn/testing";
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
    expect(explainDatabaseError(new Error("connect ECONNREFUSED"), context)).toBeUndefined();
  });

  it("anything else is one line with its code; the stack only at debug", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5999"), { code: "ECONNREFUSED" });
    expect(failureReport(refused, context, false)).toBe(
      "npm start failed: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:5999",
    );
    expect(failureReport(refused, context, true)).toContain("    at ");
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
      expect(explainDatabaseError(error, ctx)).toBeUndefined();
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
});
