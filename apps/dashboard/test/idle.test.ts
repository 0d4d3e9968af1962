import { QueueName } from "@wpn/queue";
import type { FastifyBaseLogger, LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { boardHeaders, type Client, HOST, loggedIn } from "./support/client.ts";

/**
 * The idle limit (DASHBOARD_SESSION_IDLE_SECONDS): a session unused for that long is refused like an expired one,
 * use keeps it going (the cookie is re-issued with its last use, no database write), bull-board's background polls
 * are not use, and the lifetime (DASHBOARD_SESSION_TTL_SECONDS) still caps the whole session. Explicit clock.
 */

const IDLE_MS = 900_000;
const TTL_MS = 3_600_000;

let d: TestDashboard;
let clock = Date.now();
const logLines: { code?: string; user?: string; sid?: string; idleSeconds?: number; limitSeconds?: number }[] = [];

beforeAll(async () => {
  const logger = pino({ level: "info" }, { write: (line: string) => logLines.push(JSON.parse(line)) });
  d = await startDashboard("dash_idle", {
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

/** The session cookie an answer sets (undefined when it sets none), with its Max-Age. */
function sessionCookieOf(response: LightMyRequestResponse): { value: string; maxAge?: number } | undefined {
  const cookies = response.cookies as { name: string; value: string; maxAge?: number }[];
  return cookies.find((cookie) => cookie.name === "wpn_session");
}

/** A request with exactly this session cookie (a copy of it, not a browser's jar). */
const withCookie = (value: string, url = "/", headers: Record<string, string> = json) =>
  d.app.inject({ method: "GET", url, headers: { host: HOST, ...headers, cookie: `wpn_session=${value}` } });

async function idleCount(): Promise<number> {
  const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
  return Number(/dashboard_actions_total\{action="logout",result="idle"\} (\d+)/.exec(metrics.body)?.[1] ?? 0);
}

/** A client logged in now, and the time it logged in. */
async function login(): Promise<{ client: Client; start: number }> {
  const start = clock;
  return { client: await loggedIn(d.app, "olga", PASSWORDS.olga), start };
}

/** What the bull-board client asks every few seconds while a board tab is open. */
async function poll(client: Client, headers: Record<string, string>): Promise<LightMyRequestResponse[]> {
  return Promise.all([
    client.get("/queues/api/queues?activeQueue=&status=latest&page=1&jobsPerPage=10", headers),
    client.get("/queues/api/redis/stats", headers),
  ]);
}

describe("the idle limit", () => {
  it("refuses a session unused for the limit like an expired one: login for pages, 401 for JSON and forms; logged, counted", async () => {
    const { client, start } = await login();
    const cookie = client.cookies.get("wpn_session") ?? "";
    clock = start + IDLE_MS - 1_000;
    expect((await withCookie(cookie)).statusCode).toBe(200);
    clock = start + IDLE_MS;
    const before = await idleCount();
    const lines = logLines.length;

    const page = await withCookie(cookie, "/dead-letters?x=1", { accept: "text/html" });
    expect(page.statusCode).toBe(302);
    expect(page.headers.location).toBe(`/login?next=${encodeURIComponent("/dead-letters?x=1")}`);
    // The refusal clears the dead cookie, so a tab left open stops presenting (and counting) it.
    expect(sessionCookieOf(page)?.value).toBe("");
    const api = await withCookie(cookie);
    expect(api.statusCode).toBe(401);
    expect(api.json()).toEqual({ error: "UNAUTHENTICATED", message: "log in first" });
    const form = await client.post("/dead-letters/replay", {}, { accept: "text/html", referer: `http://${HOST}/` });
    expect(form.statusCode).toBe(401);
    expect(form.body).toMatch(/session has ended/);
    expect(form.body).toMatch(/unused for too long/);

    // Requests of it still in flight when it ended (a tab's polls) are refused too, but its end is counted once.
    const inFlight = await Promise.all([withCookie(cookie), withCookie(cookie), withCookie(cookie)]);
    expect(inFlight.map((response) => response.statusCode)).toEqual([401, 401, 401]);

    expect(await idleCount()).toBe(before + 1);
    const logged = logLines.slice(lines).filter((line) => line.code === "SESSION_IDLE");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ user: "olga", idleSeconds: IDLE_MS / 1000, limitSeconds: IDLE_MS / 1000 });
    expect(logged[0]?.sid).toMatch(/^[\w-]{16}$/);
    // The browser's cookie was cleared by the first refusal: the form carried none.
    expect(client.cookies.has("wpn_session")).toBe(false);
    // A login works again.
    expect((await client.login("olga", PASSWORDS.olga)).statusCode).toBe(303);
    expect((await client.get("/", json)).statusCode).toBe(200);
  });

  it("use within the limit keeps the session past it: the cookie is re-issued (same session, forms' tokens still good)", async () => {
    const { client, start } = await login();
    const first = client.cookies.get("wpn_session") ?? "";
    const token = client.csrfToken;
    // Fresh: no new cookie for a request right after the login.
    clock = start + 10_000;
    expect(sessionCookieOf(await client.get("/", json))).toBeUndefined();
    clock = start + 600_000;
    const used = await client.get("/", json);
    expect(used.statusCode).toBe(200);
    const reissued = sessionCookieOf(used);
    expect(reissued?.value).toBeTruthy();
    expect(reissued?.value).not.toBe(first);
    // What is left of the lifetime, not a new one.
    expect(reissued?.maxAge).toBe((TTL_MS - 600_000) / 1000);
    // Past the idle limit counted from the login, within it counted from the use.
    clock = start + IDLE_MS + 300_000;
    expect((await client.get("/", json)).statusCode).toBe(200);
    // A form of the page loaded at the login still passes the CSRF check: NOTHING_SELECTED is the handler's answer.
    const replay = await client.request("POST", "/dead-letters/replay", {
      form: { _csrf: token ?? "" },
      headers: json,
    });
    expect(replay.statusCode).toBe(400);
    expect(replay.json()).toMatchObject({ error: "NOTHING_SELECTED" });
    // The cookie from before the use is idle (its own stamp), the browser's is not.
    expect((await withCookie(first)).statusCode).toBe(401);
    expect((await client.get("/", json)).statusCode).toBe(200);
    // Unused from here on: ends a whole idle limit after the last use.
    const lastUse = clock;
    clock = lastUse + IDLE_MS - 1_000;
    const copy = client.cookies.get("wpn_session") ?? "";
    expect((await withCookie(copy)).statusCode).toBe(200);
    clock = lastUse + IDLE_MS;
    expect((await client.get("/", json)).statusCode).toBe(401);
  });

  it("bull-board's polls alone do not keep a session: a board tab nobody looks at ends at the limit", async () => {
    const { client, start } = await login();
    const headers = await boardHeaders(client);
    for (let at = start + 5_000; at < start + IDLE_MS; at += 30_000) {
      clock = at;
      for (const answer of await poll(client, headers)) {
        expect(answer.statusCode).toBe(200);
        expect(sessionCookieOf(answer)).toBeUndefined();
      }
    }
    clock = start + IDLE_MS;
    const before = await idleCount();
    const answers = await poll(client, headers);
    expect(answers.map((answer) => answer.statusCode)).toEqual([401, 401]);
    // Both polls were in flight with the idle cookie: the session's end is counted once; later ones carry none.
    expect(await idleCount()).toBe(before + 1);
    expect((await poll(client, headers)).map((answer) => answer.statusCode)).toEqual([401, 401]);
    expect(await idleCount()).toBe(before + 1);
    // The board's page (a person loading it) goes to the login.
    expect((await client.get("/queues/", { accept: "text/html" })).statusCode).toBe(302);
  });

  it("a board's page and its actions are use; the polls between them are not", async () => {
    const { client, start } = await login();
    let headers = await boardHeaders(client);
    clock = start + 600_000;
    const pause = await client.request("PUT", `/queues/api/queues/${QueueName.Publish}/pause`, { headers });
    expect(pause.statusCode).toBe(200);
    expect(sessionCookieOf(pause)).toBeDefined();
    const resume = await client.request("PUT", `/queues/api/queues/${QueueName.Publish}/resume`, { headers });
    expect(resume.statusCode).toBe(200);
    clock = start + 1_200_000;
    const page = await client.get("/queues/", { accept: "text/html" });
    expect(page.statusCode).toBe(200);
    expect(sessionCookieOf(page)).toBeDefined();
    headers = await boardHeaders(client);
    clock = start + 1_200_000 + IDLE_MS - 1_000;
    for (const answer of await poll(client, headers)) expect(answer.statusCode).toBe(200);
    clock = start + 1_200_000 + IDLE_MS;
    for (const answer of await poll(client, headers)) expect(answer.statusCode).toBe(401);
  });

  it("a viewer's read-only board: its polls are not use either, its page is", async () => {
    const start = clock;
    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const headers = await boardHeaders(viewer, "/queues-readonly");
    clock = start + 600_000;
    const polled = await viewer.get("/queues-readonly/api/redis/stats", headers);
    expect(polled.statusCode).toBe(200);
    expect(sessionCookieOf(polled)).toBeUndefined();
    const page = await viewer.get("/queues-readonly/", { accept: "text/html" });
    expect(page.statusCode).toBe(200);
    expect(sessionCookieOf(page)).toBeDefined();
  });

  it("the lifetime still caps the whole session, however much it is used; no idle end is counted for that", async () => {
    const { client, start } = await login();
    for (let at = start + 600_000; at < start + TTL_MS; at += 600_000) {
      clock = at;
      expect((await client.get("/", json)).statusCode).toBe(200);
    }
    const before = await idleCount();
    clock = start + TTL_MS;
    expect((await client.get("/", json)).statusCode).toBe(401);
    expect(await idleCount()).toBe(before);
  });

  it("a logout from a page whose cookie went idle still ends the session: a copy used meanwhile stops working", async () => {
    const { client, start } = await login();
    // A copy of the cookie (taken from the browser, say) is used and re-issued while the browser's own is not.
    let copy = client.cookies.get("wpn_session") ?? "";
    for (let at = start + 300_000; at <= start + IDLE_MS + 300_000; at += 300_000) {
      clock = at;
      const used = await withCookie(copy);
      expect(used.statusCode).toBe(200);
      copy = sessionCookieOf(used)?.value || copy;
    }
    const logouts = () => d.database.db.prisma.auditLog.count({ where: { action: "logout", actor: "olga" } });
    const before = await logouts();
    const jar = new Map(client.cookies);
    // The browser's page, left open past the idle limit: its Log out form.
    const logout = await client.post("/logout", {});
    expect(logout.statusCode).toBe(303);
    expect(client.cookies.has("wpn_session")).toBe(false);
    expect((await withCookie(copy)).statusCode).toBe(401);
    expect(await logouts()).toBe(before + 1);
    // The same form sent again (another tab with the same cookies): the session is over, no second logout row.
    for (const [name, value] of jar) client.cookies.set(name, value);
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    expect(await logouts()).toBe(before + 1);
  });

  it("a login over a cookie that went idle ends that session too, as over a live one", async () => {
    const { client, start } = await login();
    let copy = client.cookies.get("wpn_session") ?? "";
    for (let at = start + 300_000; at <= start + IDLE_MS + 300_000; at += 300_000) {
      clock = at;
      const used = await withCookie(copy);
      expect(used.statusCode).toBe(200);
      copy = sessionCookieOf(used)?.value || copy;
    }
    // The login page is public: the browser still holds its idle cookie when it logs in again.
    expect((await client.login("olga", PASSWORDS.olga)).statusCode).toBe(303);
    expect((await withCookie(copy)).statusCode).toBe(401);
  });

  it("a cookie of a session logged out before it went idle is refused, and not counted as a second end", async () => {
    const { client, start } = await login();
    const cookie = client.cookies.get("wpn_session") ?? "";
    clock = start + 60_000;
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    const before = await idleCount();
    const lines = logLines.length;
    clock = start + IDLE_MS;
    const page = await withCookie(cookie, "/", { accept: "text/html" });
    expect(page.statusCode).toBe(302);
    // Still cleared, so a tab left open stops presenting it.
    expect(sessionCookieOf(page)?.value).toBe("");
    expect((await withCookie(cookie)).statusCode).toBe(401);
    // Its end was the logout (result="ok"), counted then.
    expect(await idleCount()).toBe(before);
    expect(logLines.slice(lines).some((line) => line.code === "SESSION_IDLE")).toBe(false);
  });

  it("a logout ends every copy of the session, the ones from before a re-issue included", async () => {
    const { client, start } = await login();
    const first = client.cookies.get("wpn_session") ?? "";
    clock = start + 60_000;
    expect(sessionCookieOf(await client.get("/dead-letters"))).toBeDefined();
    const current = client.cookies.get("wpn_session") ?? "";
    expect(current).not.toBe(first);
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    expect((await withCookie(first)).statusCode).toBe(401);
    expect((await withCookie(current)).statusCode).toBe(401);
  });
});
