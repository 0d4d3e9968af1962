import { createQueue, DEAD_JOB_NAME, type DeadLetter, deadLetterJobId, QueueName } from "@wpn/queue";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.ts";
import { hashPassword } from "../src/auth/password.ts";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { Client, HOST, loggedIn } from "./support/client.ts";

/**
 * A form of a page left open while its session ended — logged out (in another tab: the browser has no session cookie
 * left), expired, ended by a password change or by a newer login (the browser still sends the dead cookie). The guard
 * refuses it before the CSRF check; a browser must get a page that says so and leads back, not raw JSON, and nothing
 * may happen. Scripts and bull-board's client keep the JSON 401; GET keeps its redirect to the login.
 */

let d: TestDashboard;
let clock = Date.now();

beforeAll(async () => {
  d = await startDashboard("dash_session_ended", { now: () => new Date(clock) });
});
afterAll(async () => {
  await d?.close();
});

/** What a browser sends with a form post from a page of the dashboard at `path` (of `host`). */
const browserForm = (path: string, host = HOST) => ({
  accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  referer: `http://${host}${path}`,
});

/** A dead letter in notify.dead (the replay form's target); its id. */
async function deadLetter(): Promise<string> {
  const dead = createQueue(QueueName.Dead, d.redis, d.prefix);
  try {
    const notificationId = `n-${Math.random().toString(36).slice(2)}`;
    const letterId = deadLetterJobId(QueueName.Apply, notificationId, Date.now());
    const letter: DeadLetter = {
      v: 1,
      queue: QueueName.Apply,
      jobName: "apply",
      jobId: notificationId,
      notificationId,
      outTradeNo: "OTN",
      code: "ORDER_NOT_FOUND",
      message: "no order",
      attemptsMade: 20,
      failedAt: Date.now(),
      data: {},
    };
    await dead.add(DEAD_JOB_NAME, letter, { jobId: letterId });
    return letterId;
  } finally {
    await dead.close();
  }
}

/** Nothing was done with the letter: still in notify.dead, no audit row names it. */
async function expectUntouched(letterId: string): Promise<void> {
  const dead = createQueue(QueueName.Dead, d.redis, d.prefix);
  try {
    expect(await dead.getJob(letterId)).toBeDefined();
  } finally {
    await dead.close();
  }
  expect(await d.database.db.prisma.auditLog.count({ where: { target: letterId } })).toBe(0);
}

/** The page that explains it: 401 UNAUTHENTICATED, the session ended, nothing done, a login back to `path`. */
function expectSessionEndedPage(response: LightMyRequestResponse, path: string): void {
  expect(response.statusCode).toBe(401);
  expect(response.headers["content-type"]).toMatch(/^text\/html/);
  expect(response.body).toContain("401 UNAUTHENTICATED");
  expect(response.body).toMatch(/session has ended/);
  expect(response.body).toMatch(/logged out/);
  expect(response.body).toMatch(/expired/);
  expect(response.body).toMatch(/replaced/);
  expect(response.body).toMatch(/was not carried out/);
  expect(response.body).toContain(`href="/login?next=${encodeURIComponent(path)}"`);
}

/** A client logged in as olga on a page with the replay form (its token), and that page's token. */
async function onTheDeadLetters(app: FastifyInstance = d.app): Promise<{ client: Client; token: string }> {
  const client = await loggedIn(app, "olga", PASSWORDS.olga);
  return { client, token: client.csrfToken ?? "" };
}

const requestCount = async (status: string) => {
  const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
  const line = new RegExp(
    `dashboard_http_requests_total\\{method="POST",route="/dead-letters/replay",status="${status}"\\} (\\d+)`,
  ).exec(metrics.body);
  return Number(line?.[1] ?? 0);
};

describe("a form posted after its session ended", () => {
  it("logged out in another tab (no cookies left): a 401 page leading back through the login; nothing replayed", async () => {
    const letterId = await deadLetter();
    const { client, token } = await onTheDeadLetters();
    expect((await client.post("/logout", {})).statusCode).toBe(303);
    const before = await requestCount("401");
    const replay = await client.post(
      "/dead-letters/replay",
      { id: letterId, _csrf: token },
      browserForm("/dead-letters?replayed=1"),
    );
    expectSessionEndedPage(replay, "/dead-letters?replayed=1");
    await expectUntouched(letterId);
    // Counted under the same status as the JSON refusal.
    expect(await requestCount("401")).toBe(before + 1);
  });

  it("replaced by a newer login (the browser still sends the old cookie): the page too", async () => {
    const letterId = await deadLetter();
    const { client, token } = await onTheDeadLetters();
    // A copy of the cookies logs in over the session (logins revoke the session the browser held).
    const other = new Client(d.app);
    for (const [name, value] of client.cookies) other.cookies.set(name, value);
    other.csrfToken = token;
    expect((await other.post("/login", { username: "olga", password: PASSWORDS.olga })).statusCode).toBe(303);
    const replay = await client.post(
      "/dead-letters/replay",
      { id: letterId, _csrf: token },
      browserForm("/dead-letters"),
    );
    expectSessionEndedPage(replay, "/dead-letters");
    await expectUntouched(letterId);
  });

  it("expired: the page too", async () => {
    const letterId = await deadLetter();
    const { client, token } = await onTheDeadLetters();
    const start = clock;
    clock += d.config.DASHBOARD_SESSION_TTL_SECONDS * 1000 + 120_000;
    try {
      const replay = await client.post(
        "/dead-letters/replay",
        { id: letterId, _csrf: token },
        browserForm("/dead-letters"),
      );
      expectSessionEndedPage(replay, "/dead-letters");
    } finally {
      clock = start;
    }
    await expectUntouched(letterId);
  });

  it("ended by a password change (the process restarted with a new hash): the page too", async () => {
    const letterId = await deadLetter();
    const { client, token } = await onTheDeadLetters();
    const users = (d.config.DASHBOARD_USERS ?? "").replace(
      /olga:operator:[^,]+/,
      `olga:operator:${hashPassword("new one 1")}`,
    );
    const restarted = await buildApp({ config: { ...d.config, DASHBOARD_USERS: users }, db: d.db, redis: d.redis });
    try {
      await restarted.ready();
      const replay = await restarted.inject({
        method: "POST",
        url: "/dead-letters/replay",
        headers: {
          host: HOST,
          origin: `http://${HOST}`,
          cookie: [...client.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
          "content-type": "application/x-www-form-urlencoded",
          ...browserForm("/dead-letters"),
        },
        payload: new URLSearchParams({ id: letterId, _csrf: token }).toString(),
      });
      expectSessionEndedPage(replay, "/dead-letters");
    } finally {
      await restarted.close();
    }
    await expectUntouched(letterId);
  });

  it("links back only to a page of this host, sanitised as a login's next: else to the dashboard", async () => {
    const client = new Client(d.app);
    for (const [referer, path] of [
      [browserForm("/reviews", "evil.example"), "/"],
      [browserForm("/login?next=%2Freviews"), "/"],
      [browserForm("//evil.example/x"), "/"],
      [{ accept: "text/html" }, "/"],
    ] as const) {
      const replay = await client.post("/dead-letters/replay", { id: "x", _csrf: "t" }, referer);
      expectSessionEndedPage(replay, path);
      expect(replay.body).not.toContain("evil.example");
    }
  });

  it("scripts and bull-board's client still get the JSON 401; GET still redirects to the login", async () => {
    const letterId = await deadLetter();
    const queue = createQueue(QueueName.Parse, d.redis, d.prefix);
    try {
      const { client, token } = await onTheDeadLetters();
      const dead = client.cookies.get("wpn_session");
      expect((await client.post("/logout", {})).statusCode).toBe(303);
      client.cookies.set("wpn_session", dead ?? "");
      const script = await client.post(
        "/dead-letters/replay",
        { id: letterId, _csrf: token },
        { accept: "application/json" },
      );
      expect(script.statusCode).toBe(401);
      expect(script.json()).toEqual({ error: "UNAUTHENTICATED", message: "log in first" });
      const board = await client.request("PUT", "/queues/api/queues/notify.parse/pause", {
        headers: { "x-xsrf-token": token, accept: "application/json, text/plain, */*" },
      });
      expect(board.statusCode).toBe(401);
      expect(board.json()).toMatchObject({ error: "UNAUTHENTICATED" });
      expect(await queue.isPaused()).toBe(false);
      const page = await client.get("/dead-letters");
      expect(page.statusCode).toBe(302);
      expect(page.headers.location).toBe("/login?next=%2Fdead-letters");
      await expectUntouched(letterId);
    } finally {
      await queue.close();
    }
  });
});
