import { createDb } from "@wpn/db";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.ts";
import { SESSION_CHECK_TIMEOUT_MS } from "../src/auth/revocations.ts";
import { PASSWORDS, replicaOf, startDashboard, type TestDashboard } from "./support/app.ts";
import { Client, loggedIn } from "./support/client.ts";

let d: TestDashboard;
let clock = Date.now();

beforeAll(async () => {
  d = await startDashboard("dash_logout", { now: () => new Date(clock) });
});
afterAll(async () => {
  await d?.close();
});

/** GET / with a bare session cookie, as a script (or someone holding a captured cookie) would send it. */
const withCookie = (app: FastifyInstance, cookie: string | undefined, accept = "application/json") =>
  app.inject({ method: "GET", url: "/", headers: { cookie: `wpn_session=${cookie}`, accept } });

/** A second tab of `client`'s browser: the same cookies (session and CSRF secret) and the same page's token. */
function tabOf(client: Client, app: FastifyInstance): Client {
  const tab = new Client(app);
  for (const [name, value] of client.cookies) tab.cookies.set(name, value);
  tab.csrfToken = client.csrfToken;
  return tab;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A request with its own time to answer. */
const timed = <T>(request: Promise<T>) => {
  const started = Date.now();
  return request.then((response) => ({ response, ms: Date.now() - started }));
};

/** Waits until `condition` holds; fails, naming `what`, once `deadline` (epoch ms) has passed without it. */
/**
 * Holds "RevokedSession" in ACCESS EXCLUSIVE mode from another connection, in an open transaction (as a stuck
 * migration or a forgotten psql session would), and collects the process's unhandled rejections meanwhile.
 * `release()` rolls the lock back and stops collecting.
 */
async function lockRevokedSession(): Promise<{ unhandled: unknown[]; release(): Promise<void> }> {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  const holder = await d.database.db.pool.connect();
  await holder.query("BEGIN");
  await holder.query('LOCK TABLE "RevokedSession" IN ACCESS EXCLUSIVE MODE');
  return {
    unhandled,
    async release() {
      await holder.query("ROLLBACK");
      holder.release();
      process.off("unhandledRejection", onUnhandled);
    },
  };
}

async function until(
  condition: () => Promise<boolean>,
  deadline = Number.POSITIVE_INFINITY,
  what = "the condition",
): Promise<void> {
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not come in time`);
    await sleep(20);
  }
}

describe("logout across replicas", () => {
  it("a session logged out on one replica is refused by every other replica", async () => {
    const other = await replicaOf(d);
    try {
      const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
      const captured = client.cookies.get("wpn_session");
      // One session, good on both replicas (same secret).
      expect((await withCookie(other, captured)).statusCode).toBe(200);
      expect((await client.post("/logout", {})).statusCode).toBe(303);
      expect((await withCookie(d.app, captured)).statusCode).toBe(401);
      expect((await withCookie(other, captured)).statusCode).toBe(401);
    } finally {
      await other.close();
    }
  });

  it("a logout on another replica is refused after this one restarts, and a logout there is seen here", async () => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const captured = client.cookies.get("wpn_session");
    const first = await replicaOf(d);
    try {
      const onFirst = await loggedIn(first, "olga", PASSWORDS.olga);
      const capturedOnFirst = onFirst.cookies.get("wpn_session");
      expect((await onFirst.post("/logout", {})).statusCode).toBe(303);
      expect((await withCookie(d.app, capturedOnFirst)).statusCode).toBe(401);
      // The session logged in on `d` was not logged out: still good everywhere.
      expect((await withCookie(first, captured)).statusCode).toBe(200);
      expect((await client.post("/logout", {})).statusCode).toBe(303);
    } finally {
      await first.close();
    }
    const restarted = await replicaOf(d);
    try {
      expect((await withCookie(restarted, captured)).statusCode).toBe(401);
    } finally {
      await restarted.close();
    }
  });

  it("writes the revocation and the logout audit row together: an unaudited logout does not happen", async () => {
    const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const captured = client.cookies.get("wpn_session");
    const prisma = d.database.db.prisma;
    await prisma.$executeRawUnsafe('ALTER TABLE "AuditLog" RENAME TO "AuditLogAway"');
    try {
      expect((await client.post("/logout", {}, { accept: "application/json" })).statusCode).toBe(500);
    } finally {
      await prisma.$executeRawUnsafe('ALTER TABLE "AuditLogAway" RENAME TO "AuditLog"');
    }
    // Neither written: the session still works, so the user sees it was not ended and can log out again.
    expect((await withCookie(d.app, captured)).statusCode).toBe(200);
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    expect((await withCookie(d.app, captured)).statusCode).toBe(401);
  });

  it("a logout whose session was already logged out (another tab or replica) clears the cookie, with no second audit row", async () => {
    const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const cookie = client.cookies.get("wpn_session") ?? "";
    const { sid } = JSON.parse(Buffer.from(cookie.split(".")[1] ?? "", "base64url").toString()) as { sid: string };
    const tab = tabOf(client, d.app);
    const other = await replicaOf(d);
    try {
      const onOther = tabOf(client, other);
      expect((await client.post("/logout", {})).statusCode).toBe(303);
      // CSRF is checked as for any logout: without the page's token the dead cookie stays (nothing happens).
      const forged = await tab.post("/logout", { _csrf: "forged" }, { accept: "application/json" });
      expect(forged.statusCode).toBe(403);
      expect(tab.cookies.get("wpn_session")).toBe(cookie);
      for (const stale of [tab, onOther]) {
        const out = await stale.post("/logout", {});
        // Where a logout of a live session ends: the cookie cleared, the login page next.
        expect(out.statusCode).toBe(303);
        expect(out.headers.location).toBe("/login");
        expect(stale.cookies.has("wpn_session")).toBe(false);
      }
    } finally {
      await other.close();
    }
    // The session was logged out once: one logout row for it, not one per stale tab.
    const logouts = await d.database.db.prisma.auditLog.findMany({
      where: { action: "logout", detail: { path: ["sid"], equals: sid } },
    });
    expect(logouts).toHaveLength(1);
  });

  it("a logout whose session has expired clears the cookie too; a live session's logout still needs the CSRF token", async () => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const forged = await client.post("/logout", { _csrf: "forged" }, { accept: "application/json" });
    expect(forged.statusCode).toBe(403);
    expect((await client.get("/", { accept: "application/json" })).statusCode).toBe(200);
    const start = clock;
    clock += d.config.DASHBOARD_SESSION_TTL_SECONDS * 1000 + 1_000;
    try {
      const out = await client.post("/logout", {});
      expect(out.statusCode).toBe(303);
      expect(out.headers.location).toBe("/login");
      expect(client.cookies.has("wpn_session")).toBe(false);
    } finally {
      clock = start;
    }
  });

  it("forgets revocations once their session would have expired anyway, at the next logout", async () => {
    const prisma = d.database.db.prisma;
    const old = await loggedIn(d.app, "victor", PASSWORDS.victor);
    expect((await old.post("/logout", {})).statusCode).toBe(303);
    const sidOf = async () =>
      (await prisma.revokedSession.findMany({ select: { sid: true }, orderBy: { expiresAt: "asc" } })).map(
        (row) => row.sid,
      );
    const before = await sidOf();
    expect(before.length).toBeGreaterThan(0);
    // Past every earlier session's expiry (default lifetime 8 h; the replicas above issued theirs by the real clock,
    // a few seconds ahead of this file's): the next logout deletes their rows.
    clock += 9 * 3_600_000;
    try {
      const late = await loggedIn(d.app, "victor", PASSWORDS.victor);
      expect((await late.post("/logout", {})).statusCode).toBe(303);
      const after = await sidOf();
      expect(after).toHaveLength(1);
      expect(before).not.toContain(after[0]);
    } finally {
      clock -= 9 * 3_600_000;
    }
  });

  it("keeps a revocation while a replica whose clock is behind (within the accepted skew) still takes the cookie", async () => {
    // A replica 50 s behind this one: the sessions accept clocks that differ by up to CLOCK_SKEW_SECONDS (60 s).
    const lagging = await replicaOf(d, { now: () => new Date(clock - 50_000) });
    const start = clock;
    try {
      const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
      const captured = client.cookies.get("wpn_session");
      expect((await client.post("/logout", {})).statusCode).toBe(303);
      // 10 s past the session's expiry by this replica's clock, 40 s before it by the lagging one's; a logout here
      // cleans up the expired revocations.
      clock = start + d.config.DASHBOARD_SESSION_TTL_SECONDS * 1000 + 10_000;
      const late = await loggedIn(d.app, "olga", PASSWORDS.olga);
      expect((await late.post("/logout", {})).statusCode).toBe(303);
      expect((await withCookie(lagging, captured)).statusCode).toBe(401);
    } finally {
      clock = start;
      await lagging.close();
    }
  });
});

describe("when PostgreSQL does not answer", () => {
  it("a valid session is not taken as logged in: 503 SESSION_CHECK_UNAVAILABLE; public routes still answer", async () => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const cookie = client.cookies.get("wpn_session");
    // Nothing listens on port 1 (as in health.test.ts).
    const db = createDb({ url: "postgresql://postgres@127.0.0.1:1/nowhere", connectTimeoutMs: 500 });
    const down = await buildApp({ config: d.config, db, redis: d.redis });
    try {
      const json = await withCookie(down, cookie);
      expect(json.statusCode).toBe(503);
      expect(json.json()).toMatchObject({ error: "SESSION_CHECK_UNAVAILABLE" });
      const page = await withCookie(down, cookie, "text/html");
      expect(page.statusCode).toBe(503);
      expect(page.body).toContain("SESSION_CHECK_UNAVAILABLE");
      const live = await down.inject({
        method: "GET",
        url: "/health/live",
        headers: { cookie: `wpn_session=${cookie}` },
      });
      expect(live.statusCode).toBe(200);
      const login = await down.inject({ method: "GET", url: "/login", headers: { cookie: `wpn_session=${cookie}` } });
      expect(login.statusCode).toBe(200);
    } finally {
      await down.close();
      await db.close();
    }
  });

  it("session checks stuck on a locked RevokedSession give their connections back: more of them than the pool holds leave it free", async () => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const cookie = client.cookies.get("wpn_session");
    const prisma = d.database.db.prisma;
    // A dashboard of its own, with the production pool size (PG_POOL_MAX, 10): the test database's pool is larger.
    const name = `test:${d.database.schema}:full`;
    const db = createDb({ url: d.database.url, poolMax: d.config.PG_POOL_MAX, applicationName: name });
    const app = await buildApp({ config: d.config, db, redis: d.redis });
    /** This app's statements (of any of its pools) waiting for a lock. */
    const stuck = async () =>
      (
        await prisma.$queryRaw<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND starts_with(application_name, ${name})`
      )[0]?.n;
    const lock = await lockRevokedSession();
    try {
      // More clicks than the pool has connections, a moment apart (each with a lookup of its own).
      const clicks = [];
      for (let i = 0; i < d.config.PG_POOL_MAX + 2; i++) {
        clicks.push(timed(withCookie(app, cookie)));
        await sleep(20);
      }
      for (const { response, ms } of await Promise.all(clicks)) {
        expect(response.json()).toMatchObject({ error: "SESSION_CHECK_UNAVAILABLE" });
        expect(ms).toBeLessThan(SESSION_CHECK_TIMEOUT_MS + 1_000);
      }
      const answered = Date.now();
      // The table is still locked, yet what does not read it goes on: the readiness check's query gets a connection.
      const ready = await timed(app.inject({ method: "GET", url: "/health/ready" }));
      expect({ status: ready.response.statusCode, body: ready.response.json() }).toEqual({
        status: 200,
        body: { status: "ok", checks: { postgres: "ok", redis: "ok" } },
      });
      expect(ready.ms).toBeLessThan(1_000);
      // And the abandoned lookups are gone from PostgreSQL about one bound after their requests were answered, not
      // at the 30 s statement timeout.
      await until(
        async () => (await stuck()) === 0,
        answered + SESSION_CHECK_TIMEOUT_MS + 1_000,
        "the end of the abandoned lookups",
      );
    } finally {
      await lock.release();
      await app.close();
      await db.close();
    }
    expect(lock.unhandled).toEqual([]);
    expect((await withCookie(d.app, cookie)).statusCode).toBe(200);
  });

  it("a session check that hangs (its table locked) answers 503 within SESSION_CHECK_TIMEOUT_MS, not the statement timeout", async () => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const cookie = client.cookies.get("wpn_session");
    const prisma = d.database.db.prisma;
    /** Lookups of this file's app (its pools' connections) waiting for the lock. */
    const waiting = async () =>
      (
        await prisma.$queryRaw<{ pid: number }[]>`
          SELECT pid FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND starts_with(application_name, ${`test:${d.database.schema}`})`
      ).map((row) => row.pid);
    // PostgreSQL takes the lookups and does not answer them while another connection holds the table.
    const lock = await lockRevokedSession();
    try {
      // One after the other: both lookups wait for the lock.
      const json = timed(withCookie(d.app, cookie));
      await until(async () => (await waiting()).length === 1);
      const page = timed(withCookie(d.app, cookie, "text/html"));
      await until(async () => (await waiting()).length === 2);
      const bound = SESSION_CHECK_TIMEOUT_MS + 5_000;
      const outcome = await Promise.race([Promise.all([json, page]), sleep(bound).then(() => "waiting" as const)]);
      if (outcome === "waiting") throw new Error(`no answer within ${bound} ms`);
      for (const { response, ms } of outcome) {
        expect(response.statusCode).toBe(503);
        expect(response.body).toContain("SESSION_CHECK_UNAVAILABLE");
        // It did wait for the lock, up to the bound.
        expect(ms).toBeGreaterThanOrEqual(SESSION_CHECK_TIMEOUT_MS - 50);
        expect(ms).toBeLessThan(SESSION_CHECK_TIMEOUT_MS + 1_000);
      }
      expect(outcome[0].response.json()).toMatchObject({ error: "SESSION_CHECK_UNAVAILABLE" });
      // The abandoned lookups do not wait on behind the lock, still held: PostgreSQL cancels them at the same bound
      // (their connections' statement_timeout). Their failures go unhandled nowhere; the answers were sent already.
      await until(async () => (await waiting()).length === 0, Date.now() + 1_000, "the lookups' cancellation");
      await sleep(100);
      expect(lock.unhandled).toEqual([]);
    } finally {
      await lock.release();
    }
    // The session works again once PostgreSQL answers.
    expect((await withCookie(d.app, cookie)).statusCode).toBe(200);
  });
});
