import { createQueue, createRedisConnection, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { QueueEvents, UnrecoverableError, Worker } from "bullmq";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { buildApp } from "../src/app.ts";
import { hashPassword } from "../src/auth/password.ts";
import { PASSWORDS, replicaOf, startDashboard, type TestDashboard } from "./support/app.ts";
import { boardHeaders, Client, HOST, loggedIn, ORIGIN } from "./support/client.ts";

let d: TestDashboard;
let clock = Date.now();

beforeAll(async () => {
  d = await startDashboard("dash_auth", {
    env: { DASHBOARD_SESSION_TTL_SECONDS: "3600", DASHBOARD_LOGIN_ATTEMPTS_PER_MINUTE: "5" },
    now: () => new Date(clock),
  });
});
afterAll(async () => {
  await d?.close();
});

/** One login attempt from `ip`, posted as a browser would after opening the login page (CSRF token, cookie). */
async function loginFrom(
  app: FastifyInstance,
  ip: string,
  username: string,
  password: string,
  headers: Record<string, string> = {},
) {
  const client = new Client(app);
  await client.get("/login");
  return app.inject({
    method: "POST",
    url: "/login",
    remoteAddress: ip,
    headers: {
      host: HOST,
      origin: ORIGIN,
      cookie: [...client.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
      "content-type": "application/x-www-form-urlencoded",
      ...headers,
    },
    payload: new URLSearchParams({ username, password, _csrf: client.csrfToken ?? "" }).toString(),
  });
}

const PUBLIC_ROUTES = [
  "GET /health/live",
  "GET /health/ready",
  "GET /login",
  "GET /metrics",
  "HEAD /health/live",
  "HEAD /health/ready",
  "HEAD /login",
  "HEAD /metrics",
  "POST /login",
];

/**
 * Not public, but reached without a live session: a logout only clears the (dead or missing) cookie then. It is a
 * mutation like any other, so without a CSRF token it is refused (403) before anything happens.
 */
const SESSIONLESS_ROUTES = ["POST /logout"];

/** A concrete URL for a route pattern: every parameter and wildcard becomes a plausible value. */
function concrete(url: string): string {
  return url
    .replace(/:queueName/g, QueueName.Parse)
    .replace(/:[A-Za-z]+/g, "x")
    .replace(/\*/g, "x");
}

describe("nothing is reachable without a session", () => {
  it("enumerates every registered route, ours and bull-board's, and each answers 302/401 without a cookie (logout: 403 CSRF)", async () => {
    const routes = d.app.dashboardRoutes;
    // bull-board's own routes are in the list (both boards), so the check below covers them.
    const keys = routes.map((r) => `${r.method} ${r.url}`);
    expect(keys).toContain("PUT /queues/api/queues/:queueName/pause");
    expect(keys).toContain("PUT /queues/api/queues/:queueName/:jobId/retry");
    expect(keys).toContain("GET /queues/static/*");
    expect(keys).toContain("PUT /queues-readonly/api/queues/:queueName/clean/:queueStatus");
    expect(keys).toContain("POST /dead-letters/replay");
    expect(keys).toEqual(expect.arrayContaining(SESSIONLESS_ROUTES));
    expect(routes.length).toBeGreaterThan(80);

    const publicRoutes: string[] = [];
    for (const route of routes) {
      const key = `${route.method} ${route.url}`;
      if (PUBLIC_ROUTES.includes(key)) {
        publicRoutes.push(key);
        continue;
      }
      for (const accept of ["text/html", "application/json"]) {
        const response = await d.app.inject({
          method: route.method as "GET",
          url: concrete(route.url),
          headers: { host: HOST, accept, origin: ORIGIN },
        });
        const expected = SESSIONLESS_ROUTES.includes(key) ? [403] : [302, 401];
        expect(expected, `${key} (${accept}) answered ${response.statusCode}`).toContain(response.statusCode);
        if (response.statusCode === 302) expect(response.headers.location).toMatch(/^\/login\?next=/);
      }
    }
    // The only routes without a session are the ones meant to be public; a new public route must be added here.
    expect(publicRoutes.sort()).toEqual(PUBLIC_ROUTES);
  });

  it("does not reveal unknown paths either", async () => {
    const response = await d.app.inject({
      method: "GET",
      url: "/no/such/page",
      headers: { accept: "application/json" },
    });
    expect(response.statusCode).toBe(401);
  });

  it("rejects a tampered or foreign session cookie", async () => {
    const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const cookie = client.cookies.get("wpn_session") ?? "";
    const [version, payload, mac] = cookie.split(".");
    const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: "olga", role: "operator" })).toString("base64url");
    for (const value of [`${version}.${forged}.${mac}`, `${cookie}x`, "v1.e30.AAAA", "garbage"]) {
      const response = await d.app.inject({
        method: "GET",
        url: "/",
        headers: { cookie: `wpn_session=${value}`, accept: "application/json" },
      });
      expect(response.statusCode).toBe(401);
    }
  });

  it("serves /metrics and /health/* without a session", async () => {
    const live = await d.app.inject({ method: "GET", url: "/health/live" });
    expect(live.statusCode).toBe(200);
    const ready = await d.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.json()).toEqual({ status: "ok", checks: { postgres: "ok", redis: "ok" } });
    const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toContain("dashboard_http_requests_total");
    expect(metrics.body).toContain('dashboard_logins_total{result="success"}');
  });
});

describe("login and sessions", () => {
  it("sets an HttpOnly, SameSite=Lax session cookie with an expiry, and records the login", async () => {
    const client = new Client(d.app);
    const response = await client.login("olga", PASSWORDS.olga);
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toBe("/");
    const setCookie = [response.headers["set-cookie"]].flat().find((c) => c?.startsWith("wpn_session="));
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Lax/);
    expect(setCookie).toMatch(/Max-Age=3600/);
    expect(setCookie).toMatch(/Path=\//);
    const page = await client.get("/");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("olga (operator)");
    const audit = await d.database.db.prisma.auditLog.findFirst({ where: { actor: "olga", action: "login" } });
    expect(audit).not.toBeNull();
  });

  it("refuses wrong passwords and unknown users without setting a session", async () => {
    for (const [name, password] of [
      ["olga", "wrong"],
      ["nobody", PASSWORDS.olga],
    ] as const) {
      const client = new Client(d.app);
      const response = await client.login(name, password);
      expect(response.statusCode).toBe(401);
      expect(response.body).toContain("Wrong name or password.");
      expect(client.cookies.has("wpn_session")).toBe(false);
    }
  });

  it("refuses a login form without a valid CSRF token", async () => {
    const client = new Client(d.app);
    await client.get("/login");
    const response = await client.post("/login", { username: "olga", password: PASSWORDS.olga, _csrf: "forged" });
    expect(response.statusCode).toBe(403);
    expect(client.cookies.has("wpn_session")).toBe(false);
  });

  it("redirects to a same-site `next` only", async () => {
    const client = new Client(d.app);
    await client.get("/login");
    const ok = await client.post("/login", { username: "olga", password: PASSWORDS.olga, next: "/reviews?reason=X" });
    expect(ok.headers.location).toBe("/reviews?reason=X");
    const other = new Client(d.app);
    await other.get("/login");
    const evil = await other.post("/login", { username: "olga", password: PASSWORDS.olga, next: "//evil.example/" });
    expect(evil.headers.location).toBe("/");
  });

  it("redirects to a `next` with characters outside Latin-1, percent-encoded, after a login or with a session", async () => {
    const client = new Client(d.app);
    await client.get(`/login?next=${encodeURIComponent("/notifications?q=订单")}`);
    const login = await client.post("/login", {
      username: "olga",
      password: PASSWORDS.olga,
      next: "/notifications?q=订单",
    });
    expect(login.statusCode).toBe(303);
    expect(login.headers.location).toBe("/notifications?q=%E8%AE%A2%E5%8D%95");
    expect(client.cookies.has("wpn_session")).toBe(true);
    const again = await client.get("/login?next=%2F%E8%AE%A2");
    expect(again.statusCode).toBe(303);
    expect(again.headers.location).toBe("/%E8%AE%A2");
  });

  it("sends browsers without a session to the login page, keeping where they wanted to go", async () => {
    const response = await d.app.inject({ method: "GET", url: "/dead-letters?x=1", headers: { accept: "text/html" } });
    expect(response.statusCode).toBe(302);
    expect(response.headers.location).toBe(`/login?next=${encodeURIComponent("/dead-letters?x=1")}`);
    // A search for a URL path is a page too: only bull-board's API, by its path, answers JSON.
    const search = `/notifications?q=${encodeURIComponent("/api/v3/pay")}&outTradeNo=/api/`;
    const page = await d.app.inject({ method: "GET", url: search, headers: { accept: "text/html" } });
    expect(page.statusCode).toBe(302);
    expect(page.headers.location).toBe(`/login?next=${encodeURIComponent(search)}`);
    const api = await d.app.inject({ method: "GET", url: "/queues/api/queues?x=1", headers: { accept: "text/html" } });
    expect(api.statusCode).toBe(401);
  });

  it("ends a session on logout and after its lifetime", async () => {
    const client = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const stolen = client.cookies.get("wpn_session");
    const out = await client.post("/logout", {});
    expect(out.statusCode).toBe(303);
    // The logout row names the session it ended, so it can be matched to its login row.
    const audited = await d.database.db.prisma.auditLog.findMany({
      where: { actor: "victor", action: { in: ["login", "logout"] } },
      orderBy: { id: "desc" },
      take: 2,
    });
    expect(audited.map((row) => row.action)).toEqual(["logout", "login"]);
    const [logout, login] = audited.map((row) => row.detail as { ip?: string; sid?: string });
    expect(logout).toEqual({ ip: "127.0.0.1", sid: login?.sid });
    expect(login?.sid).toMatch(/^[\w-]{16}$/);
    const replayed = await d.app.inject({ method: "GET", url: "/", headers: { cookie: `wpn_session=${stolen}` } });
    expect(replayed.statusCode).toBe(401);

    const later = await loggedIn(d.app, "victor", PASSWORDS.victor);
    expect((await later.get("/")).statusCode).toBe(200);
    clock += 3_601_000;
    try {
      expect((await later.get("/", { accept: "application/json" })).statusCode).toBe(401);
    } finally {
      clock -= 3_601_000;
    }
  });

  it("a password change in DASHBOARD_USERS ends that user's sessions; other users keep theirs", async () => {
    const olga = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const victor = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const json = { accept: "application/json" };
    // The same deployment (same DASHBOARD_SESSION_SECRET) restarted with olga's password reset.
    const users = (d.config.DASHBOARD_USERS ?? "").replace(
      /olga:operator:[^,]+/,
      `olga:operator:${hashPassword("new password 2")}`,
    );
    const reset = await startDashboard("dash_password_reset", { env: { DASHBOARD_USERS: users } });
    try {
      const onReset = (client: Client) =>
        reset.app.inject({
          method: "GET",
          url: "/dead-letters",
          headers: { ...json, cookie: `wpn_session=${client.cookies.get("wpn_session")}` },
        });
      expect((await onReset(olga)).statusCode).toBe(401);
      expect((await onReset(victor)).statusCode).toBe(200);
      expect((await loggedIn(reset.app, "olga", "new password 2").then((c) => c.get("/", json))).statusCode).toBe(200);
      // Where the old password is still configured, the session still works.
      expect((await olga.get("/", json)).statusCode).toBe(200);
    } finally {
      await reset.close();
    }
  });

  it("rate-limits failed logins per IP", async () => {
    const ip = "203.0.113.7";
    const client = new Client(d.app);
    await client.get("/login");
    const attempt = (password: string) => loginFrom(d.app, ip, "olga", password);
    for (let i = 0; i < 5; i++) expect((await attempt("wrong")).statusCode).toBe(401);
    const limited = await attempt(PASSWORDS.olga);
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    // Another address is not affected; the window passes.
    expect((await client.login("olga", PASSWORDS.olga)).statusCode).toBe(303);
    clock += 61_000;
    try {
      expect((await attempt(PASSWORDS.olga)).statusCode).toBe(303);
    } finally {
      clock -= 61_000;
    }
    const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(/dashboard_logins_total\{result="rate_limited"\} [1-9]/);
  });

  it("counts attempts sent in parallel: at most the limit are checked, the password among them gets 429 too", async () => {
    const ip = "203.0.113.8";
    const attempts = await Promise.all([
      ...Array.from({ length: 20 }, () => loginFrom(d.app, ip, "olga", "wrong")),
      loginFrom(d.app, ip, "olga", PASSWORDS.olga),
    ]);
    const statuses = attempts.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(5);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(16);
    expect(statuses.at(-1)).toBe(429);
  });

  it("counts failures across dashboard processes: two replicas sharing one Redis prefix allow no more than the limit", async () => {
    const replica = await replicaOf(d, { now: () => new Date(clock) });
    try {
      const ip = "203.0.113.9";
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++)
        statuses.push((await loginFrom(i % 2 ? replica : d.app, ip, "olga", "wrong")).statusCode);
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);
    } finally {
      await replica.close();
    }
  });

  it("fails closed: without Redis a login is refused with 503 LOGIN_LIMIT_UNAVAILABLE, even with the right password", async () => {
    const down = createRedisConnection("redis://127.0.0.1:1", "admin");
    down.on("error", () => {}); // the refused connection, expected here
    const app = await buildApp({ config: d.config, db: d.database.db, redis: down, now: () => new Date(clock) });
    try {
      await app.ready();
      const response = await loginFrom(app, "203.0.113.10", "olga", PASSWORDS.olga, { accept: "application/json" });
      expect(response.statusCode).toBe(503);
      expect(response.json()).toMatchObject({ error: "LOGIN_LIMIT_UNAVAILABLE" });
      expect([response.headers["set-cookie"] ?? []].flat().filter((c) => c.startsWith("wpn_session="))).toEqual([]);
    } finally {
      await app.close();
      down.disconnect();
    }
  });

  it("without Redis a browser's login gets the login form back (503, its name kept, the reason shown), counted", async () => {
    const down = createRedisConnection("redis://127.0.0.1:1", "admin");
    down.on("error", () => {}); // the refused connection, expected here
    const app = await buildApp({ config: d.config, db: d.database.db, redis: down, now: () => new Date(clock) });
    try {
      await app.ready();
      const response = await loginFrom(app, "203.0.113.11", "olga", PASSWORDS.olga, { accept: "text/html" });
      expect(response.statusCode).toBe(503);
      expect(response.body).toContain('<form method="post" action="/login">');
      expect(response.body).toContain('value="olga"');
      expect(response.body).toContain("Logging in is unavailable");
      expect(response.headers["retry-after"]).toBe("30");
      expect([response.headers["set-cookie"] ?? []].flat().filter((c) => c.startsWith("wpn_session="))).toEqual([]);
      const metrics = await app.inject({ method: "GET", url: "/metrics" });
      expect(metrics.body).toMatch(/dashboard_logins_total\{result="unavailable"\} 1/);
    } finally {
      await app.close();
      down.disconnect();
    }
  });

  it("a login that cannot be audited does not happen: no session cookie", async () => {
    const prisma = d.database.db.prisma;
    await prisma.$executeRawUnsafe('ALTER TABLE "AuditLog" RENAME TO "AuditLogAway"');
    try {
      const response = await loginFrom(d.app, "203.0.113.20", "olga", PASSWORDS.olga);
      expect(response.statusCode).toBe(500);
      const cookies = [response.headers["set-cookie"] ?? []].flat();
      expect(cookies.filter((c) => c.startsWith("wpn_session="))).toEqual([]);
    } finally {
      await prisma.$executeRawUnsafe('ALTER TABLE "AuditLogAway" RENAME TO "AuditLog"');
    }
  });

  it("the login page does not tell which names exist: the typed name comes back either way", async () => {
    for (const username of ["olga", "nobody-here"]) {
      const response = await loginFrom(d.app, `203.0.113.${username.length}`, username, "wrong");
      expect(response.statusCode).toBe(401);
      expect(response.body).toContain(`value="${username}"`);
    }
  });
});

describe("behind a reverse proxy (DASHBOARD_TRUST_PROXY)", () => {
  it("takes the address the proxy appended, so a client cannot dodge the login limit with its own X-Forwarded-For", async () => {
    const proxied = await startDashboard("dash_proxy", {
      env: { DASHBOARD_LOGIN_ATTEMPTS_PER_MINUTE: "3", DASHBOARD_TRUST_PROXY: "true" },
    });
    try {
      const attempt = (n: number) =>
        loginFrom(proxied.app, "10.0.0.2", "olga", "wrong", { "x-forwarded-for": `192.0.2.${n}, 198.51.100.9` });
      const statuses: number[] = [];
      for (let n = 1; n <= 5; n++) statuses.push((await attempt(n)).statusCode);
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
    } finally {
      await proxied.close();
    }
  });

  it("with the proxies' addresses, X-Forwarded-For is read only from them: a client connecting directly cannot pick its address", async () => {
    const proxied = await startDashboard("dash_proxy_list", {
      env: { DASHBOARD_LOGIN_ATTEMPTS_PER_MINUTE: "3", DASHBOARD_TRUST_PROXY: "10.0.0.2, 10.1.0.0/16" },
    });
    try {
      // Directly, a new X-Forwarded-For per attempt: the connection's address counts.
      const direct: number[] = [];
      for (let n = 1; n <= 5; n++) {
        direct.push(
          (await loginFrom(proxied.app, "198.51.100.66", "olga", "wrong", { "x-forwarded-for": `192.0.2.${n}` }))
            .statusCode,
        );
      }
      expect(direct).toEqual([401, 401, 401, 429, 429]);
      // Through the proxies (two hops, both listed): the address the outer one appended, whatever the client wrote.
      const behind: number[] = [];
      for (let n = 1; n <= 5; n++) {
        const xff = `192.0.2.${n}, 203.0.113.50, 10.1.4.4`;
        behind.push((await loginFrom(proxied.app, "10.0.0.2", "olga", "wrong", { "x-forwarded-for": xff })).statusCode);
      }
      expect(behind).toEqual([401, 401, 401, 429, 429]);
      const ok = await loginFrom(proxied.app, "10.0.0.2", "victor", PASSWORDS.victor, {
        "x-forwarded-for": "203.0.113.51",
      });
      expect(ok.statusCode).toBe(303);
      const audit = await proxied.database.db.prisma.auditLog.findFirst({ where: { action: "login" } });
      expect(audit?.detail).toMatchObject({ ip: "203.0.113.51" });
      // X-Forwarded-Host from a peer that is not a listed proxy is not taken either.
      const forgedHost = { host: HOST, origin: "https://evil.example", "x-forwarded-host": "evil.example" };
      expect((await loginFrom(proxied.app, "198.51.100.67", "victor", PASSWORDS.victor, forgedHost)).statusCode).toBe(
        403,
      );
    } finally {
      await proxied.close();
    }
  });

  it("DASHBOARD_TRUST_PROXY=true still trusts any peer's last hop, and says so at start-up", async () => {
    const lines: { level: number; code?: string }[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const anyPeer = await startDashboard("dash_proxy_any", { env: { DASHBOARD_TRUST_PROXY: "true" }, logger });
    await anyPeer.close();
    expect(lines.filter((l) => l.code === "TRUST_PROXY_ANY_PEER").map((l) => l.level)).toEqual([40]);
    lines.length = 0;
    const listed = await startDashboard("dash_proxy_listed", { env: { DASHBOARD_TRUST_PROXY: "10.0.0.2" }, logger });
    await listed.close();
    expect(lines.filter((l) => l.code === "TRUST_PROXY_ANY_PEER")).toEqual([]);
  });

  it("marks every cookie Secure (session and CSRF secret as __Host- cookies) when the proxy says the request came over HTTPS, without DASHBOARD_COOKIE_SECURE", async () => {
    const proxied = await startDashboard("dash_proxy_tls", { env: { DASHBOARD_TRUST_PROXY: "10.0.0.2" } });
    try {
      /** A browser's login and board visit, each request from `peer` with `headers`; the cookies each answer set. */
      const visit = async (peer: string, headers: Record<string, string>) => {
        const set = new Map<string, string>();
        const jar = new Map<string, string>();
        const send = async (method: "GET" | "POST", url: string, payload?: Record<string, string>) => {
          const response = await proxied.app.inject({
            method,
            url,
            remoteAddress: peer,
            headers: {
              host: HOST,
              accept: "text/html",
              ...(method === "POST"
                ? { origin: "https://dashboard.test", "content-type": "application/x-www-form-urlencoded" }
                : {}),
              cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; "),
              ...headers,
            },
            payload: payload && new URLSearchParams(payload).toString(),
          });
          for (const line of [response.headers["set-cookie"] ?? []].flat()) {
            const [pair = ""] = line.split(";");
            const name = pair.slice(0, pair.indexOf("="));
            set.set(name, line);
            jar.set(name, pair.slice(name.length + 1));
          }
          return response;
        };
        const page = await send("GET", "/login");
        const token = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? "";
        const login = await send("POST", "/login", { username: "olga", password: PASSWORDS.olga, _csrf: token });
        expect(login.statusCode).toBe(303);
        expect((await send("GET", "/queues/")).statusCode).toBe(200);
        return set;
      };
      // TLS ended at the listed proxy, which says so (nginx: proxy_set_header X-Forwarded-Proto $scheme).
      const overTls = await visit("10.0.0.2", { "x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7" });
      for (const name of ["__Host-wpn_session", "__Host-_csrf", "XSRF-TOKEN"]) {
        expect(overTls.get(name), name).toMatch(/; Secure/);
      }
      expect(overTls.has("wpn_session") || overTls.has("_csrf")).toBe(false);
      // Plain HTTP (development on 127.0.0.1), or a client that is no listed proxy claiming HTTPS: not Secure, or the
      // browser would drop the cookies and nobody could log in over http://.
      for (const [peer, headers] of [
        ["10.0.0.2", { "x-forwarded-proto": "http" }],
        ["198.51.100.70", { "x-forwarded-proto": "https" }],
      ] as const) {
        const plain = await visit(peer, headers);
        for (const name of ["wpn_session", "_csrf", "XSRF-TOKEN"]) {
          expect(plain.get(name), `${peer} ${name}`).toBeDefined();
          expect(plain.get(name), `${peer} ${name}`).not.toMatch(/; Secure/);
        }
        expect(
          [...plain.keys()].filter((name) => name.startsWith("__Host-")),
          peer,
        ).toEqual([]);
      }
    } finally {
      await proxied.close();
    }
  });

  it("tells browsers to use HTTPS only (Strict-Transport-Security) on every answer that went out over HTTPS, not over plain HTTP", async () => {
    const proxied = await startDashboard("dash_proxy_hsts", { env: { DASHBOARD_TRUST_PROXY: "10.0.0.2" } });
    const configured = await startDashboard("dash_hsts_configured", { env: { DASHBOARD_COOKIE_SECURE: "true" } });
    try {
      const hsts = async (app: FastifyInstance, peer: string, headers: Record<string, string>, url: string) => {
        const response = await app.inject({
          method: "GET",
          url,
          remoteAddress: peer,
          headers: { host: HOST, ...headers },
        });
        return response.headers["strict-transport-security"];
      };
      // The login page, a redirect to it, a 401, a public route: every answer, public or not.
      for (const url of ["/login", "/", "/queues/api/queues", "/health/live"]) {
        // TLS ended at the listed proxy, which says so; or DASHBOARD_COOKIE_SECURE=true (the deployment is HTTPS).
        expect(await hsts(proxied.app, "10.0.0.2", { "x-forwarded-proto": "https" }, url), url).toBe(
          "max-age=31536000",
        );
        expect(await hsts(configured.app, "127.0.0.1", {}, url), url).toBe("max-age=31536000");
        // Plain HTTP, or a client that is no listed proxy claiming HTTPS: nothing (browsers ignore it there anyway).
        expect(await hsts(proxied.app, "10.0.0.2", { "x-forwarded-proto": "http" }, url), url).toBeUndefined();
        expect(await hsts(proxied.app, "198.51.100.70", { "x-forwarded-proto": "https" }, url), url).toBeUndefined();
      }
      // A URL the router refuses too (Fastify builds its request without the proxy's headers: the setting decides).
      expect(await hsts(configured.app, "127.0.0.1", {}, "/notifications/%E0%A4%A")).toBe("max-age=31536000");
    } finally {
      await proxied.close();
      await configured.close();
    }
  });

  it("a proxy that rewrites Host must send X-Forwarded-Host (nginx's proxy_pass does not), or mutations are CSRF_ORIGIN", async () => {
    const proxied = await startDashboard("dash_proxy_host", { env: { DASHBOARD_TRUST_PROXY: "true" } });
    try {
      // nginx's default proxy_pass: Host rewritten to the upstream's name, X-Forwarded-For appended.
      const behindNginx = { host: "dashboard:3001", origin: "https://console.example.com" };
      const refused = await loginFrom(proxied.app, "10.0.0.2", "olga", PASSWORDS.olga, behindNginx);
      expect(refused.statusCode).toBe(403);
      expect(refused.json()).toMatchObject({ error: "CSRF_ORIGIN" });
      // `proxy_set_header X-Forwarded-Host $host;` (README, "Sessions, CSRF, hardening").
      const forwarded = { ...behindNginx, "x-forwarded-host": "console.example.com" };
      expect((await loginFrom(proxied.app, "10.0.0.2", "olga", PASSWORDS.olga, forwarded)).statusCode).toBe(303);
    } finally {
      await proxied.close();
    }
  });
});

describe("roles and CSRF on bull-board", () => {
  const parse = async () => createQueue(QueueName.Parse, d.redis, d.prefix);

  it("lets a viewer look but answers 403 to every mutation, and nothing changes", async () => {
    const queue = await parse();
    try {
      const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
      expect((await viewer.get("/queues/api/queues", { accept: "application/json" })).statusCode).toBe(200);
      // The full board's pages send viewers to the read-only board.
      const redirected = await viewer.get("/queues/queue/notify.parse");
      expect(redirected.statusCode).toBe(302);
      expect(redirected.headers.location).toBe("/queues-readonly/queue/notify.parse");
      const headers = await boardHeaders(viewer, "/queues-readonly");
      for (const [method, url] of [
        ["PUT", "/queues/api/queues/notify.parse/pause"],
        ["PUT", "/queues/api/queues/pause"],
        ["PUT", "/queues/api/queues/notify.parse/clean/failed"],
        ["PUT", "/queues/api/queues/notify.parse/retry/failed"],
        ["PUT", "/queues/api/queues/notify.parse/promote"],
        ["PUT", "/queues-readonly/api/queues/notify.parse/pause"],
        ["POST", "/queues/api/queues/notify.parse/add"],
      ] as const) {
        const response = await viewer.request(method, url, { headers, json: {} });
        expect(response.statusCode, `${method} ${url}`).toBe(403);
      }
      expect(await queue.isPaused()).toBe(false);
      expect(await queue.count()).toBe(0);
      const audits = await d.database.db.prisma.auditLog.count({
        where: { actor: "victor", action: { startsWith: "queues." } },
      });
      expect(audits).toBe(0);
    } finally {
      await queue.close();
    }
  });

  it("lets an operator pause and resume through bull-board, audited", async () => {
    const queue = await parse();
    try {
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator);
      const pause = await operator.request("PUT", "/queues/api/queues/notify.parse/pause", { headers });
      expect(pause.statusCode).toBe(200);
      expect(await queue.isPaused()).toBe(true);
      const resume = await operator.request("PUT", "/queues/api/queues/notify.parse/resume", { headers });
      expect(resume.statusCode).toBe(200);
      expect(await queue.isPaused()).toBe(false);
      const audit = await d.database.db.prisma.auditLog.findMany({
        where: { actor: "olga", action: { in: ["queues.pause", "queues.resume"] } },
        orderBy: { id: "asc" },
      });
      expect(audit.map((a) => [a.action, a.target, a.role])).toEqual([
        ["queues.pause", "notify.parse", "operator"],
        ["queues.resume", "notify.parse", "operator"],
      ]);
    } finally {
      await queue.close();
    }
  });

  it("a bull-board action that cannot be audited does not happen; an audited one records its outcome", async () => {
    const queue = await parse();
    const prisma = d.database.db.prisma;
    try {
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator);
      await prisma.$executeRawUnsafe('ALTER TABLE "AuditLog" RENAME TO "AuditLogAway"');
      try {
        const pause = await operator.request("PUT", "/queues/api/queues/notify.parse/pause", { headers });
        expect(pause.statusCode).toBe(500);
        // Logged, not sent: Prisma's message quotes source lines.
        expect(pause.json()).toEqual({ error: "INTERNAL", message: "internal error (logged)" });
        expect(await queue.isPaused()).toBe(false);
      } finally {
        await prisma.$executeRawUnsafe('ALTER TABLE "AuditLogAway" RENAME TO "AuditLog"');
      }
      const clean = await operator.request("PUT", "/queues/api/queues/notify.parse/clean/completed", { headers });
      expect(clean.statusCode).toBe(200);
      const audit = await prisma.auditLog.findFirst({
        where: { actor: "olga", action: "queues.clean" },
        orderBy: { id: "desc" },
      });
      expect(audit?.detail).toMatchObject({ method: "PUT", status: 200 });
    } finally {
      await queue.close();
    }
  });

  it("refuses an operator the bull-board actions that would forge, drop or alter notifications; cleans completed jobs", async () => {
    const queue = await parse();
    try {
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator);
      const waiting = await queue.add("parse", { v: 1, note: "kept" }, { jobId: "kept-1" });
      const delayed = await queue.add("parse", { v: 1, note: "later" }, { jobId: "later-1", delay: 60_000 });
      const refused: ["POST" | "PUT" | "PATCH", string, unknown][] = [
        // An unsigned APIv2 payment would mark an order paid: no job reaches a queue but through the ingress.
        ["POST", "/queues/api/queues/notify.parse/add", { name: "parse", data: { v: 1, api: "v2" }, options: {} }],
        ["PATCH", `/queues/api/queues/notify.parse/${waiting.id}/update-data`, { jobData: { v: 1, forged: true } }],
        ["PUT", "/queues/api/queues/notify.parse/empty", {}],
        ["PUT", "/queues/api/queues/notify.parse/obliterate", {}],
        ["PUT", "/queues/api/queues/notify.parse/clean/wait", {}],
        ["PUT", "/queues/api/queues/notify.parse/clean/delayed", {}],
        ["PUT", `/queues/api/queues/notify.parse/${waiting.id}/clean`, {}],
        ["PUT", `/queues/api/queues/notify.parse/${delayed.id}/clean`, {}],
        // One job at a time, even a finished one: a replay between bull-board's state check and its removal
        // would have the replayed job removed, its dead letter already gone.
        ["PATCH", `/queues/api/queues/notify.parse/${delayed.id}/delay`, { delay: 1 }],
        ["PUT", "/queues/api/queues/notify.parse/concurrency", { concurrency: 1 }],
      ];
      for (const [method, url, json] of refused) {
        const response = await operator.request(method, url, { headers, json });
        expect(response.statusCode, `${method} ${url}`).toBe(403);
        expect(response.json().error, `${method} ${url}`).toBe("ACTION_NOT_ALLOWED");
      }
      expect(await queue.getJobCounts("wait", "delayed")).toEqual({ wait: 1, delayed: 1 });
      expect((await queue.getJob("kept-1"))?.data).toEqual({ v: 1, note: "kept" });
      const audits = await d.database.db.prisma.auditLog.count({
        where: {
          actor: "olga",
          action: { in: ["queues.add", "queues.update-data", "queues.empty", "queues.obliterate"] },
        },
      });
      expect(audits).toBe(0);

      // Completed jobs (their effect in PostgreSQL) may go, by set: BullMQ cleans a set in one atomic step.
      await queue.remove("kept-1");
      await queue.remove("later-1");
      const workerConnection = createRedisConnection(TEST_REDIS_URL, "worker");
      const eventsConnection = createRedisConnection(TEST_REDIS_URL, "worker");
      const worker = new Worker(QueueName.Parse, async () => "ok", { connection: workerConnection, prefix: d.prefix });
      const events = new QueueEvents(QueueName.Parse, { connection: eventsConnection, prefix: d.prefix });
      try {
        await events.waitUntilReady();
        const done = await queue.add("parse", { v: 1 }, { jobId: "done-1" });
        await done.waitUntilFinished(events);
      } finally {
        await worker.close();
        await events.close();
        workerConnection.disconnect();
        eventsConnection.disconnect();
      }
      expect(await queue.getJobState("done-1")).toBe("completed");
      const one = await operator.request("PUT", "/queues/api/queues/notify.parse/done-1/clean", { headers });
      expect(one.statusCode).toBe(403);
      // bull-board's clean keeps jobs finished in the last 5 s, by BullMQ's Date.now() (no clock of the dashboard's
      // reaches it): the clock is moved 5.1 s on for the request rather than waited for.
      vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 5_100 });
      const cleaned = await operator
        .request("PUT", "/queues/api/queues/notify.parse/clean/completed", { headers })
        .finally(() => vi.useRealTimers());
      expect(cleaned.statusCode).toBe(200);
      expect(await queue.getJob("done-1")).toBeUndefined();
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  it("refuses to clean failed jobs: one without a dead letter is the only copy", async () => {
    const apply = createQueue(QueueName.Apply, d.redis, d.prefix);
    const publish = createQueue(QueueName.Publish, d.redis, d.prefix);
    const dead = createQueue(QueueName.Dead, d.redis, d.prefix);
    try {
      // An apply job that stalled too often while Redis refused its letter (worker README: DEAD_LETTER_FAILED, kept
      // in the failed list for bull-board's retry), and a publish job the merchant's consumer gave up on (no letter).
      await apply.add("apply", { v: 1, note: "acknowledged to WeChat" }, { jobId: "apply-1", attempts: 1 });
      await publish.add("payment.succeeded", { v: 1, note: "event" }, { jobId: "publish-1", attempts: 1 });
      for (const [name, queue, jobId] of [
        [QueueName.Apply, apply, "apply-1"],
        [QueueName.Publish, publish, "publish-1"],
      ] as const) {
        const workerConnection = createRedisConnection(TEST_REDIS_URL, "worker");
        const eventsConnection = createRedisConnection(TEST_REDIS_URL, "worker");
        const events = new QueueEvents(name, { connection: eventsConnection, prefix: d.prefix });
        const worker = new Worker(
          name,
          async () => {
            throw new UnrecoverableError("gave up");
          },
          { connection: workerConnection, prefix: d.prefix },
        );
        try {
          await events.waitUntilReady();
          await (await queue.getJob(jobId))?.waitUntilFinished(events).catch(() => undefined);
        } finally {
          await worker.close();
          await events.close();
          workerConnection.disconnect();
          eventsConnection.disconnect();
        }
      }
      expect(await apply.getJobState("apply-1")).toBe("failed");
      expect(await publish.getJobState("publish-1")).toBe("failed");
      expect(await dead.count()).toBe(0);
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator);
      for (const name of [QueueName.Parse, QueueName.Apply, QueueName.Publish, QueueName.Dead]) {
        const url = `/queues/api/queues/${name}/clean/failed`;
        const response = await operator.request("PUT", url, { headers });
        expect(response.statusCode, url).toBe(403);
        expect(response.json(), url).toMatchObject({ error: "ACTION_NOT_ALLOWED" });
        expect(response.json().message, url).toContain("no dead letter");
      }
      expect(await apply.getJobState("apply-1")).toBe("failed");
      expect(await publish.getJobState("publish-1")).toBe("failed");
      // Retry stays the way out of the failed list.
      const retried = await operator.request("PUT", "/queues/api/queues/notify.apply/retry/failed", { headers });
      expect(retried.statusCode).toBe(200);
      expect(await apply.getJobState("apply-1")).toBe("waiting");
    } finally {
      await apply.obliterate({ force: true });
      await publish.obliterate({ force: true });
      await apply.close();
      await publish.close();
      await dead.close();
    }
  });

  it("refuses to clean completed dead letters: one a stray consumer of notify.dead completed was never replayed", async () => {
    const dead = createQueue(QueueName.Dead, d.redis, d.prefix);
    try {
      await dead.add("dead", { v: 1, note: "the only copy of a job that could not be applied" }, { jobId: "letter-1" });
      // A consumer that has no business on notify.dead (a misconfigured worker) takes the letter and completes it.
      const workerConnection = createRedisConnection(TEST_REDIS_URL, "worker");
      const eventsConnection = createRedisConnection(TEST_REDIS_URL, "worker");
      const worker = new Worker(QueueName.Dead, async () => "ok", { connection: workerConnection, prefix: d.prefix });
      const events = new QueueEvents(QueueName.Dead, { connection: eventsConnection, prefix: d.prefix });
      try {
        await events.waitUntilReady();
        await (await dead.getJob("letter-1"))?.waitUntilFinished(events);
      } finally {
        await worker.close();
        await events.close();
        workerConnection.disconnect();
        eventsConnection.disconnect();
      }
      expect(await dead.getJobState("letter-1")).toBe("completed");
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator);
      // Past bull-board's 5 s of grace (see "cleans completed jobs" above).
      vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 5_100 });
      const cleaned = await operator
        .request("PUT", `/queues/api/queues/${QueueName.Dead}/clean/completed`, { headers })
        .finally(() => vi.useRealTimers());
      expect(cleaned.statusCode).toBe(403);
      expect(cleaned.json()).toMatchObject({ error: "ACTION_NOT_ALLOWED" });
      expect(await dead.getJobState("letter-1")).toBe("completed");
      // Retry is the way back to the letters the dead-letter page lists and replays.
      const retried = await operator.request("PUT", `/queues/api/queues/${QueueName.Dead}/retry/completed`, {
        headers,
      });
      expect(retried.statusCode).toBe(200);
      expect(await dead.getJobState("letter-1")).toBe("waiting");
    } finally {
      await dead.obliterate({ force: true });
      await dead.close();
    }
  });

  it("shows job data without the payer ids of APIv2 payment bodies, also inside a dead letter", async () => {
    const queue = await parse();
    const dead = createQueue(QueueName.Dead, d.redis, d.prefix);
    try {
      const body =
        "<xml><appid>wx1</appid><openid><![CDATA[oPAYER-SECRET-1]]></openid><sub_openid>oPAYER-SECRET-2</sub_openid><total_fee>1</total_fee></xml>";
      await queue.add("parse", { v: 1, api: "v2", kind: "pay", body }, { jobId: "v2-openid" });
      await dead.add("dead", { queue: "notify.parse", data: { body } }, { jobId: "dead-openid" });
      const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
      for (const url of [
        "/queues-readonly/api/queues/notify.parse/v2-openid",
        "/queues-readonly/api/queues?activeQueue=notify.parse&status=waiting&page=1",
        "/queues-readonly/api/queues/notify.dead/dead-openid",
      ]) {
        const response = await viewer.get(url, { accept: "application/json" });
        expect(response.statusCode, url).toBe(200);
        expect(response.body, url).not.toContain("oPAYER-SECRET");
        expect(response.body, url).toContain("<openid>(hidden)</openid>");
      }
      // Redis keeps the body as WeChat sent it (the worker needs it).
      expect((await queue.getJob("v2-openid"))?.data.body).toBe(body);
    } finally {
      await queue.obliterate({ force: true });
      await dead.obliterate({ force: true });
      await queue.close();
      await dead.close();
    }
  });

  it("hides the payer ids however the XML writes their tags: whitespace, attributes, a CDATA holding an end tag", async () => {
    const queue = await parse();
    try {
      // Each is an `openid` / `sub_openid` field to the workers' parser (parseV2Xml of @wpn/wechatpay: XML allows
      // whitespace before a tag's `>`, and attributes, which it ignores), so a payment written so is applied with it.
      const bodies = [
        "<xml><openid >oPAYER-SECRET-1</openid></xml>",
        "<xml><openid\n>oPAYER-SECRET-2</openid\n></xml>",
        '<xml><sub_openid type="x">oPAYER-SECRET-3</sub_openid ></xml>',
        "<xml><openid><![CDATA[oPAYER-SECRET-4</openid>oPAYER-SECRET-5]]></openid></xml>",
      ];
      for (const [i, body] of bodies.entries()) {
        await queue.add("parse", { v: 1, api: "v2", kind: "pay", body }, { jobId: `v2-openid-form-${i}` });
      }
      const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
      for (const i of bodies.keys()) {
        const url = `/queues-readonly/api/queues/notify.parse/v2-openid-form-${i}`;
        const response = await viewer.get(url, { accept: "application/json" });
        expect(response.statusCode, url).toBe(200);
        expect(response.body, url).not.toContain("oPAYER-SECRET");
        expect(response.body, url).toContain("(hidden)");
      }
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  it("finds no job under the name of one of the queue's own keys (WRONGTYPE was a 500, `meta` a phantom job)", async () => {
    const queue = await parse();
    try {
      await queue.add("parse", { v: 1 }, { jobId: "an-ordinary-job" }); // creates `id`, `events`, `meta`
      const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
      for (const id of ["events", "meta", "id", "12345"]) {
        for (const board of ["/queues", "/queues-readonly"]) {
          const response = await viewer.get(`${board}/api/queues/notify.parse/${id}`, { accept: "application/json" });
          expect(response.statusCode, `${board} ${id}`).toBe(404);
          expect(response.json(), `${board} ${id}`).toMatchObject({ error: "NOT_FOUND" });
        }
      }
      const ordinary = await viewer.get("/queues-readonly/api/queues/notify.parse/an-ordinary-job", {
        accept: "application/json",
      });
      expect(ordinary.statusCode).toBe(200);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  it("refuses a control character in a bull-board parameter (400 BAD_REQUEST) before auditing it (NUL was a 500)", async () => {
    const queue = await parse();
    const prisma = d.database.db.prisma;
    try {
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator);
      const audits = () => prisma.auditLog.count({ where: { actor: "olga", action: { startsWith: "queues." } } });
      const before = await audits();
      // Queue name, job id and status of allowed actions: PostgreSQL refused the NUL in their audit row (22021).
      for (const [method, url] of [
        ["PUT", "/queues/api/queues/notify.parse%00/pause"],
        ["PUT", "/queues/api/queues/notify.parse/x%00/retry"],
        ["PUT", "/queues/api/queues/notify.parse/x%00/promote"],
        ["PUT", "/queues/api/queues/notify.parse/retry/failed%00"],
        ["GET", "/queues/api/queues/notify.parse/x%1B"],
      ] as const) {
        const response = await operator.request(method, url, { headers });
        expect(response.statusCode, `${method} ${url}`).toBe(400);
        expect(response.json(), `${method} ${url}`).toMatchObject({ error: "BAD_REQUEST" });
      }
      expect(await audits()).toBe(before);
      expect(await queue.isPaused()).toBe(false);
    } finally {
      await queue.close();
    }
  });

  it("refuses an operator's bull-board call with a bad token, no token, or from another origin", async () => {
    const queue = await parse();
    try {
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator);
      const url = "/queues/api/queues/notify.parse/pause";
      const cases: Record<string, string>[] = [
        { ...headers, "x-xsrf-token": "bad-token" },
        { accept: "application/json" },
        { ...headers, origin: "http://evil.example" },
        { ...headers, origin: "null" },
      ];
      for (const h of cases) {
        const response = await operator.request("PUT", url, { headers: h });
        expect(response.statusCode).toBe(403);
      }
      // Neither Origin nor Referer: refused. A same-origin Referer alone is accepted.
      const bare = await d.app.inject({
        method: "PUT",
        url,
        headers: { host: HOST, cookie: [...operator.cookies].map(([k, v]) => `${k}=${v}`).join("; "), ...headers },
      });
      expect(bare.statusCode).toBe(403);
      expect(await queue.isPaused()).toBe(false);
      const viaReferer = await d.app.inject({
        method: "PUT",
        url,
        headers: {
          host: HOST,
          referer: `${ORIGIN}/queues/queue/notify.parse`,
          cookie: [...operator.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
          ...headers,
        },
      });
      expect(viaReferer.statusCode).toBe(200);
      expect(await queue.isPaused()).toBe(true);
      await queue.resume();
    } finally {
      await queue.close();
    }
  });

  it("keeps the read-only board read-only even for operators", async () => {
    const queue = await parse();
    try {
      const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
      const headers = await boardHeaders(operator, "/queues-readonly");
      const response = await operator.request("PUT", "/queues-readonly/api/queues/notify.parse/pause", { headers });
      expect(response.statusCode).toBe(405);
      expect(await queue.isPaused()).toBe(false);
    } finally {
      await queue.close();
    }
  });

  it("answers a URL with a malformed escape like any bad request: 400, its code, security headers, counted", async () => {
    const badUrlCount = async () => {
      const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
      const line = /dashboard_http_requests_total\{method="GET",route="unmatched",status="400"\} (\d+)/.exec(
        metrics.body,
      );
      return Number(line?.[1] ?? 0);
    };
    const before = await badUrlCount();
    for (const [accept, type] of [
      ["text/html", "text/html"],
      ["application/json", "application/json"],
    ] as const) {
      const response = await d.app.inject({ method: "GET", url: "/notifications/%E0%A4%A", headers: { accept } });
      expect(response.statusCode).toBe(400);
      expect(response.headers["content-type"]).toContain(type);
      expect(response.body).toContain("FST_ERR_BAD_URL");
      expect(response.headers["x-content-type-options"]).toBe("nosniff");
      expect(response.headers["x-frame-options"]).toBe("DENY");
      expect(response.headers["content-security-policy"]).toContain("default-src 'self'");
      expect(response.headers["cache-control"]).toBe("no-store");
    }
    expect(await badUrlCount()).toBe(before + 2);
  });

  it("sends security headers with every page", async () => {
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const page = await operator.get("/");
    expect(page.headers["content-security-policy"]).toContain("default-src 'self'");
    expect(page.headers["x-frame-options"]).toBe("DENY");
    expect(page.headers["cache-control"]).toBe("no-store");
  });
});
