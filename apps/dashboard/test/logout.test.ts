import { createDb } from "@wpn/db";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.ts";
import { PASSWORDS, replicaOf, startDashboard, type TestDashboard } from "./support/app.ts";
import { loggedIn } from "./support/client.ts";

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
});
