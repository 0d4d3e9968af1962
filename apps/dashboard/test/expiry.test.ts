import type { FastifyBaseLogger, LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionCodec } from "../src/auth/session.ts";
import { parseUsers } from "../src/auth/users.ts";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { HOST, loggedIn } from "./support/client.ts";

/**
 * The absolute lifetime (DASHBOARD_SESSION_TTL_SECONDS): a session past it is refused, and — like one past the idle
 * limit — logged with its code (SESSION_EXPIRED) and counted as a session ended
 * (`dashboard_actions_total{action="logout",result="expired"}`), its cookie cleared. Explicit clock.
 */

const TTL_MS = 3_600_000;
const IDLE_MS = 900_000;

let d: TestDashboard;
let clock = Date.now();
const logLines: { code?: string; user?: string; sid?: string; ageSeconds?: number; limitSeconds?: number }[] = [];

beforeAll(async () => {
  const logger = pino({ level: "info" }, { write: (line: string) => logLines.push(JSON.parse(line)) });
  d = await startDashboard("dash_expiry", {
    now: () => new Date(clock),
    logger: logger as FastifyBaseLogger,
    env: {
      DASHBOARD_SESSION_TTL_SECONDS: String(TTL_MS / 1000),
      DASHBOARD_SESSION_IDLE_SECONDS: String(IDLE_MS / 1000),
    },
  });
});
afterAll(async () => {
  await d?.close();
});

const json = { accept: "application/json" };

const withCookie = (value: string, url = "/", headers: Record<string, string> = json) =>
  d.app.inject({ method: "GET", url, headers: { host: HOST, ...headers, cookie: `wpn_session=${value}` } });

function sessionCookieOf(response: LightMyRequestResponse): { value: string } | undefined {
  const cookies = response.cookies as { name: string; value: string }[];
  return cookies.find((cookie) => cookie.name === "wpn_session");
}

async function endedCount(result: "expired" | "idle"): Promise<number> {
  const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
  const line = new RegExp(`dashboard_actions_total\\{action="logout",result="${result}"\\} (\\d+)`).exec(metrics.body);
  return Number(line?.[1] ?? 0);
}

describe("the absolute lifetime", () => {
  it("refuses a session past its lifetime however used: logged SESSION_EXPIRED, counted expired (not idle), cookie cleared", async () => {
    const start = clock;
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    for (let at = start + 600_000; at < start + TTL_MS; at += 600_000) {
      clock = at;
      expect((await client.get("/", json)).statusCode).toBe(200);
    }
    const cookie = client.cookies.get("wpn_session") ?? "";
    const [expiredBefore, idleBefore] = [await endedCount("expired"), await endedCount("idle")];
    const lines = logLines.length;
    clock = start + TTL_MS;

    const page = await withCookie(cookie, "/reviews", { accept: "text/html" });
    expect(page.statusCode).toBe(302);
    expect(page.headers.location).toBe(`/login?next=${encodeURIComponent("/reviews")}`);
    expect(sessionCookieOf(page)?.value).toBe("");
    expect((await withCookie(cookie)).statusCode).toBe(401);

    // Two requests with the cookie, one end of the session: counted and logged once.
    expect(await endedCount("expired")).toBe(expiredBefore + 1);
    expect(await endedCount("idle")).toBe(idleBefore);
    const logged = logLines.slice(lines).filter((line) => line.code === "SESSION_EXPIRED");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ user: "olga", ageSeconds: TTL_MS / 1000, limitSeconds: TTL_MS / 1000 });
    expect(logged[0]?.sid).toMatch(/^[\w-]{16}$/);
    expect(logLines.slice(lines).some((line) => line.code === "SESSION_IDLE")).toBe(false);
  });

  it("an expired session that also went unused is expired: the lifetime is the harder limit", async () => {
    const start = clock;
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const cookie = client.cookies.get("wpn_session") ?? "";
    const [expiredBefore, idleBefore] = [await endedCount("expired"), await endedCount("idle")];
    clock = start + TTL_MS + 60_000;
    expect((await withCookie(cookie)).statusCode).toBe(401);
    expect(await endedCount("expired")).toBe(expiredBefore + 1);
    expect(await endedCount("idle")).toBe(idleBefore);
  });

  it("a lifetime lowered since the login ends the session at the new one, logged with that limit", async () => {
    const user = parseUsers(d.config.DASHBOARD_USERS).get("victor");
    if (!user) throw new Error("no victor");
    // Issued by a process with a lifetime twice as long (the same secret): the cookie's own `exp` is later.
    const longer = new SessionCodec(
      "test-secret-test-secret-test-secret-0123",
      { ttlSeconds: (2 * TTL_MS) / 1000, idleSeconds: IDLE_MS / 1000 },
      () => clock,
    );
    const start = clock;
    const { value } = longer.issue(user);
    clock = start + TTL_MS - 1_000;
    // Used recently enough (a fresh stamp), so only the lifetime can refuse it.
    const current = longer.touch(decode(value))?.value ?? value;
    expect((await withCookie(current)).statusCode).toBe(200);
    const before = await endedCount("expired");
    const lines = logLines.length;
    clock = start + TTL_MS;
    expect((await withCookie(current)).statusCode).toBe(401);
    expect(await endedCount("expired")).toBe(before + 1);
    expect(logLines.slice(lines).find((line) => line.code === "SESSION_EXPIRED")).toMatchObject({
      user: "victor",
      limitSeconds: TTL_MS / 1000,
    });
  });

  it("a cookie of a session logged out before its lifetime ended is refused, and not counted as a second end", async () => {
    const start = clock;
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const cookie = client.cookies.get("wpn_session") ?? "";
    clock = start + 60_000;
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    const [expiredBefore, idleBefore] = [await endedCount("expired"), await endedCount("idle")];
    const lines = logLines.length;
    clock = start + TTL_MS;
    const page = await withCookie(cookie, "/", { accept: "text/html" });
    expect(page.statusCode).toBe(302);
    expect(sessionCookieOf(page)?.value).toBe("");
    expect((await withCookie(cookie)).statusCode).toBe(401);
    // Its end was the logout (result="ok"), counted then.
    expect(await endedCount("expired")).toBe(expiredBefore);
    expect(await endedCount("idle")).toBe(idleBefore);
    expect(logLines.slice(lines).some((line) => line.code === "SESSION_EXPIRED")).toBe(false);
  });

  it("a logout with an expired session clears the cookie and counts nothing", async () => {
    const start = clock;
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    clock = start + TTL_MS;
    const before = await endedCount("expired");
    const logout = await client.post("/logout", {});
    expect(logout.statusCode).toBe(303);
    expect(client.cookies.has("wpn_session")).toBe(false);
    expect(await endedCount("expired")).toBe(before);
  });
});

/** The claims of a cookie value (its middle part). */
function decode(value: string) {
  return JSON.parse(Buffer.from(value.split(".")[1] ?? "", "base64url").toString("utf8"));
}
