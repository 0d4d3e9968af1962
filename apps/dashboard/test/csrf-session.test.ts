import { createQueue, QueueName } from "@wpn/queue";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { boardHeaders, Client, loggedIn } from "./support/client.ts";

/**
 * The CSRF secret and the session: a token from before a login (the login page's, or one an attacker got on their own
 * visit and whose secret cookie they planted in the victim's browser — a sibling subdomain, or a man in the middle of
 * any http:// request to the host, can write cookies) must not be accepted once the victim is logged in, nor one from
 * the session after its logout; and with secure cookies the session and CSRF secret cookies are `__Host-` cookies,
 * which no subdomain and no http:// answer can set.
 */

let d: TestDashboard;
let secure: TestDashboard;

beforeAll(async () => {
  d = await startDashboard("dash_csrf_session");
  secure = await startDashboard("dash_csrf_host", { env: { DASHBOARD_COOKIE_SECURE: "true" } });
});
afterAll(async () => {
  await d?.close();
  await secure?.close();
});

/** The Set-Cookie lines of a response, by cookie name. */
function setCookies(response: LightMyRequestResponse): Map<string, string> {
  const lines = [response.headers["set-cookie"] ?? []].flat();
  return new Map(lines.map((line) => [line.slice(0, line.indexOf("=")), line]));
}

/** The attacker's own visit to the login page: a CSRF secret cookie (name and signed value) and a token for it. */
async function attackerSecret(client: Client): Promise<{ name: string; value: string; token: string }> {
  const page = await client.get("/login");
  const [name, value] = [...client.cookies].find(([n]) => n.endsWith("_csrf")) ?? [];
  if (page.statusCode !== 200 || !name || !value || !client.csrfToken) throw new Error("no CSRF secret on /login");
  return { name, value, token: client.csrfToken };
}

describe("the CSRF secret is the session's, not the browser's", () => {
  it("a secret planted before login, and its token, are refused once the victim has logged in", async () => {
    const queue = createQueue(QueueName.Parse, d.redis, d.prefix);
    try {
      const planted = await attackerSecret(new Client(d.app));
      const victim = new Client(d.app);
      victim.cookies.set(planted.name, planted.value);
      expect((await victim.login("olga", PASSWORDS.olga)).statusCode).toBe(303);
      // A cross-site form cannot carry the victim's token, but the attacker's own: it must not do.
      const pause = await victim.request("PUT", "/queues/api/queues/notify.parse/pause", {
        headers: { "x-xsrf-token": planted.token, accept: "application/json" },
      });
      expect(pause.statusCode).toBe(403);
      expect(pause.json()).toMatchObject({ error: "FST_CSRF_INVALID_TOKEN" });
      expect(await queue.isPaused()).toBe(false);
      const logout = await victim.post("/logout", { _csrf: planted.token }, { accept: "application/json" });
      expect(logout.statusCode).toBe(403);
      expect((await victim.get("/", { accept: "application/json" })).statusCode).toBe(200);
      // The victim's own pages carry tokens that work.
      const headers = await boardHeaders(victim);
      expect((await victim.request("PUT", "/queues/api/queues/notify.parse/pause", { headers })).statusCode).toBe(200);
      await queue.resume();
    } finally {
      await queue.close();
    }
  });

  it("the login page's token is refused after the login, and the login answer replaces the secret cookie", async () => {
    const client = new Client(d.app);
    await client.get("/login");
    const before = { secret: client.cookies.get("_csrf"), token: client.csrfToken ?? "" };
    const login = await client.post("/login", { username: "victor", password: PASSWORDS.victor });
    expect(login.statusCode).toBe(303);
    const rotated = setCookies(login).get("_csrf");
    expect(rotated).toMatch(/^_csrf=[^;]+;/);
    expect(client.cookies.get("_csrf")).not.toBe(before.secret);
    const stale = await client.post("/logout", { _csrf: before.token }, { accept: "application/json" });
    expect(stale.statusCode).toBe(403);
    expect((await client.get("/", { accept: "application/json" })).statusCode).toBe(200);
  });

  it("a secret planted after login is useless too: tokens are bound to the session they were issued in", async () => {
    const planted = await attackerSecret(new Client(d.app));
    const victim = await loggedIn(d.app, "olga", PASSWORDS.olga);
    victim.cookies.set(planted.name, planted.value);
    const logout = await victim.post("/logout", { _csrf: planted.token }, { accept: "application/json" });
    expect(logout.statusCode).toBe(403);
    expect((await victim.get("/", { accept: "application/json" })).statusCode).toBe(200);
  });

  it("logout clears the CSRF cookies: a token from the session is refused after it, the login form among others", async () => {
    const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
    await boardHeaders(client, "/queues-readonly");
    const sessionToken = client.csrfToken ?? "";
    const out = await client.post("/logout", {});
    expect(out.statusCode).toBe(303);
    const cleared = setCookies(out);
    for (const name of ["wpn_session", "_csrf", "XSRF-TOKEN"]) {
      expect(cleared.get(name), name).toMatch(/Max-Age=0|Expires=Thu, 01 Jan 1970/);
    }
    // Back on the login page (a new secret), the session's token is not good for a login.
    await client.get("/login");
    const login = await client.post("/login", { username: "victor", password: PASSWORDS.victor, _csrf: sessionToken });
    expect(login.statusCode).toBe(403);
    expect(client.cookies.has("wpn_session")).toBe(false);
  });
});

describe("__Host- cookies when cookies are secure", () => {
  it("with DASHBOARD_COOKIE_SECURE=true the session and CSRF secret are __Host- cookies: Secure, Path=/, no Domain", async () => {
    const client = new Client(secure.app);
    const page = await client.get("/login");
    const login = await client.post("/login", { username: "olga", password: PASSWORDS.olga });
    expect(login.statusCode).toBe(303);
    const set = new Map([...setCookies(page), ...setCookies(login)]);
    for (const name of ["__Host-wpn_session", "__Host-_csrf"]) {
      const line = set.get(name);
      expect(line, name).toMatch(/; Secure/);
      expect(line, name).toMatch(/; Path=\/(;|$)/);
      expect(line, name).not.toMatch(/Domain=/i);
    }
    expect([...set.keys()].filter((name) => name === "wpn_session" || name === "_csrf")).toEqual([]);
    expect((await client.get("/", { accept: "application/json" })).statusCode).toBe(200);
    await client.get("/dead-letters");
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    expect(client.cookies.has("__Host-wpn_session")).toBe(false);
  });

  it("with secure cookies, cookies without the prefix are not read: a `_csrf` or `wpn_session` there does nothing", async () => {
    // The victim's own secret and token, but the secret under the plain name (as a subdomain could write it).
    const victim = await loggedIn(secure.app, "olga", PASSWORDS.olga);
    const secret = victim.cookies.get("__Host-_csrf") ?? "";
    expect(secret).not.toBe("");
    victim.cookies.delete("__Host-_csrf");
    victim.cookies.set("_csrf", secret);
    const logout = await victim.post("/logout", {}, { accept: "application/json" });
    expect(logout.statusCode).toBe(403);
    expect(logout.json()).toMatchObject({ error: "FST_CSRF_MISSING_SECRET" });
    expect((await victim.get("/", { accept: "application/json" })).statusCode).toBe(200);
    // A session cookie under the plain name (here a valid one, from the same deployment) is not a session there.
    const plain = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const response = await secure.app.inject({
      method: "GET",
      url: "/",
      headers: { cookie: `wpn_session=${plain.cookies.get("wpn_session")}`, accept: "application/json" },
    });
    expect(response.statusCode).toBe(401);
  });
});

describe("a form from before the last login or logout (a stale tab)", () => {
  /** What a browser sends with a form post from a page of the dashboard at `path`. */
  const browserForm = (path: string) => ({
    accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    referer: `http://dashboard.test${path}`,
  });

  /** The answer is the page that explains it, with the way back to `path`; the code stays in the heading. */
  function expectStalePage(response: LightMyRequestResponse, code: string, path: string): void {
    expect(response.statusCode).toBe(403);
    expect(response.headers["content-type"]).toMatch(/^text\/html/);
    expect(response.body).toContain(`403 ${code}`);
    expect(response.body).toMatch(/out of date/);
    expect(response.body).toMatch(/logged in or out/);
    expect(response.body).toContain(`href="${path}"`);
    expect(response.body).toContain(`href="/login?next=${encodeURIComponent(path)}"`);
  }

  it("a form of the session before a logout and a new login gets a page saying so, and nothing happens", async () => {
    const client = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const stale = client.csrfToken ?? "";
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    expect((await client.login("olga", PASSWORDS.olga)).statusCode).toBe(303);
    const session = client.cookies.get("wpn_session");
    const logout = await client.post("/logout", { _csrf: stale }, browserForm("/dead-letters"));
    expectStalePage(logout, "FST_CSRF_INVALID_TOKEN", "/dead-letters");
    expect(logout.body).toContain("olga");
    expect(client.cookies.get("wpn_session")).toBe(session);
    expect((await client.get("/", { accept: "application/json" })).statusCode).toBe(200);
    // bull-board's client (axios) and scripts still get the JSON refusal.
    const api = await client.request("PUT", "/queues/api/queues/notify.parse/pause", {
      headers: { "x-xsrf-token": stale, accept: "application/json, text/plain, */*" },
    });
    expect(api.statusCode).toBe(403);
    expect(api.json()).toMatchObject({ error: "FST_CSRF_INVALID_TOKEN" });
  });

  it("a login form left open while the browser logged in elsewhere gets the page too, and logs nobody in", async () => {
    const client = new Client(d.app);
    await client.get("/login");
    const stale = client.csrfToken ?? "";
    // Another tab of the same browser logs in.
    expect((await client.login("olga", PASSWORDS.olga)).statusCode).toBe(303);
    const session = client.cookies.get("wpn_session");
    const login = await client.post(
      "/login",
      { username: "victor", password: PASSWORDS.victor, _csrf: stale },
      browserForm("/login?next=%2Freviews"),
    );
    // The login page is not a page to go back to: the way back is the dashboard.
    expectStalePage(login, "FST_CSRF_INVALID_TOKEN", "/");
    expect(client.cookies.get("wpn_session")).toBe(session);
  });

  it("a form posted after a logout in another tab (no secret cookie left) gets the page too", async () => {
    const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const stale = client.csrfToken ?? "";
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    const logout = await client.post("/logout", { _csrf: stale }, browserForm("/notifications?q=1"));
    expectStalePage(logout, "FST_CSRF_MISSING_SECRET", "/notifications?q=1");
    expect(logout.body).toMatch(/not logged in/);
  });
});
