import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { Client, loggedIn } from "./support/client.ts";

/**
 * A login from a browser that already holds a live session (the same user again, or another one on a shared
 * machine) ends that session for good, as a logout would: a copy of the old cookie must not keep working.
 */

let d: TestDashboard;

beforeAll(async () => {
  d = await startDashboard("dash_relogin");
});
afterAll(async () => {
  await d?.close();
});

/** GET / with a bare session cookie, as someone holding a copy of it would send it. */
const withCookie = (app: FastifyInstance, cookie: string | undefined) =>
  app.inject({ method: "GET", url: "/", headers: { cookie: `wpn_session=${cookie}`, accept: "application/json" } });

/** The session id a cookie carries. */
const sidOf = (cookie: string | undefined) =>
  (JSON.parse(Buffer.from(cookie?.split(".")[1] ?? "", "base64url").toString()) as { sid: string }).sid;

/** `dashboard_actions_total{action="logout",result="ok"}`: the logouts counted, as the `logout` audit rows are. */
const logoutsCounted = async () => {
  const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
  return Number(/dashboard_actions_total\{action="logout",result="ok"\} (\d+)/.exec(metrics.body)?.[1] ?? 0);
};

const auditRows = (action: string, sid: string) =>
  d.database.db.prisma.auditLog.findMany({ where: { action, detail: { path: ["sid"], equals: sid } } });

describe("a login over a live session", () => {
  it.each([
    ["the same user", "olga"],
    ["another user", "victor"],
  ] as const)("revokes the session the browser held (%s): a copy of the old cookie is refused", async (_, name) => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const old = client.cookies.get("wpn_session");
    const counted = await logoutsCounted();
    // The form carries a token of the live session (loggedIn loaded a page of it).
    const login = await client.post("/login", { username: name, password: PASSWORDS[name] });
    expect(login.statusCode).toBe(303);
    const current = client.cookies.get("wpn_session");
    expect(current).not.toBe(old);
    expect((await withCookie(d.app, current)).statusCode).toBe(200);
    expect((await withCookie(d.app, old)).statusCode).toBe(401);
    // Ended as a logout ends it: a RevokedSession row kept until the session's own expiry, and a `logout` row of the
    // old session's user naming the session that replaced it.
    const revoked = await d.database.db.prisma.revokedSession.findUnique({ where: { sid: sidOf(old) } });
    const exp = (JSON.parse(Buffer.from(old?.split(".")[1] ?? "", "base64url").toString()) as { exp: number }).exp;
    expect(revoked?.expiresAt.getTime()).toBe(exp * 1000);
    const [logout, ...more] = await auditRows("logout", sidOf(old));
    expect(more).toEqual([]);
    expect(logout).toMatchObject({ actor: "olga", role: "operator" });
    expect(logout?.detail).toMatchObject({ sid: sidOf(old), replacedBy: sidOf(current) });
    expect(await auditRows("login", sidOf(current))).toHaveLength(1);
    // Counted as a logout is: one more, as one more logout row.
    expect(await logoutsCounted()).toBe(counted + 1);
  });

  it("a login with a session no longer live (logged out elsewhere), or none, revokes nothing and writes no logout row", async () => {
    const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const old = client.cookies.get("wpn_session");
    // Another browser holding the same cookies logs the session out; this one still sends the dead cookie.
    const other = new Client(d.app);
    for (const [cookie, value] of client.cookies) other.cookies.set(cookie, value);
    other.csrfToken = client.csrfToken;
    expect((await other.post("/logout", {})).statusCode).toBe(303);
    const counted = await logoutsCounted();
    const login = await client.post("/login", { username: "victor", password: PASSWORDS.victor });
    expect(login.statusCode).toBe(303);
    expect(await auditRows("logout", sidOf(old))).toHaveLength(1);
    expect((await withCookie(d.app, client.cookies.get("wpn_session"))).statusCode).toBe(200);
    // Without a cookie: as before, a login and nothing else.
    const fresh = new Client(d.app);
    expect((await fresh.login("olga", PASSWORDS.olga)).statusCode).toBe(303);
    const sid = sidOf(fresh.cookies.get("wpn_session"));
    expect(await auditRows("login", sid)).toHaveLength(1);
    expect(await d.database.db.prisma.revokedSession.findUnique({ where: { sid } })).toBeNull();
    // Neither login ended a session: no logout counted.
    expect(await logoutsCounted()).toBe(counted);
  });

  it("when the old session cannot be revoked, the login does not happen: 500, no new session, the old one unchanged", async () => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const old = client.cookies.get("wpn_session");
    const prisma = d.database.db.prisma;
    const logins = await prisma.auditLog.count({ where: { action: "login" } });
    const counted = await logoutsCounted();
    await prisma.$executeRawUnsafe('ALTER TABLE "RevokedSession" RENAME TO "RevokedSessionAway"');
    let login: Awaited<ReturnType<Client["post"]>>;
    try {
      login = await client.post(
        "/login",
        { username: "victor", password: PASSWORDS.victor },
        { accept: "application/json" },
      );
    } finally {
      await prisma.$executeRawUnsafe('ALTER TABLE "RevokedSessionAway" RENAME TO "RevokedSession"');
    }
    expect(login.statusCode).toBe(500);
    expect(login.headers["set-cookie"]).toBeUndefined();
    expect(client.cookies.get("wpn_session")).toBe(old);
    expect(await prisma.auditLog.count({ where: { action: "login" } })).toBe(logins);
    expect(await auditRows("logout", sidOf(old))).toEqual([]);
    expect(await logoutsCounted()).toBe(counted);
    // Still olga's, visibly: she can log in again (or out) once PostgreSQL takes the write.
    expect((await withCookie(d.app, old)).statusCode).toBe(200);
    expect((await client.post("/login", { username: "victor", password: PASSWORDS.victor })).statusCode).toBe(303);
    expect((await withCookie(d.app, old)).statusCode).toBe(401);
  });
});
