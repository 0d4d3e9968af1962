import { once } from "node:events";
import { createServer, type Server } from "node:net";
import {
  createTestDatabase,
  createTestMerchant,
  deletePrefix,
  TEST_REDIS_URL,
  type TestDatabase,
  testQueuePrefix,
} from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningApp, startApp } from "./support/processes.ts";

/**
 * The apps on an address they cannot listen on — a port another process holds (the onboarding review's second
 * `npm start`, or a port another tool uses), a HOST that is no name of this machine. Each must say so in one coded
 * line, naming the address, the setting to change and the cause, and exit 78 as for any other configuration fault.
 * Before, the ingress and the worker died with Node's stack trace (exit 1), and the dashboard logged "cannot listen"
 * (exit 1) with neither the setting nor the cause.
 */
const prefix = testQueuePrefix("listen");
const apps: RunningApp[] = [];
const held: Server[] = [];
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("listen");
});

afterAll(async () => {
  for (const app of apps) await app.stop(1_000);
  for (const server of held) server.close();
  await database?.drop();
  await deletePrefix(prefix);
});

/** A port on 127.0.0.1 that another process (this one) listens on. */
async function heldPort(): Promise<number> {
  const port = await freePort();
  const server = createServer();
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  held.push(server);
  return port;
}

/** The exit code and output of an app that must exit by itself within `ms`. */
async function exitOf(app: RunningApp, ms = 30_000): Promise<{ code: number | null; output: string }> {
  if (app.child.exitCode === null && app.child.signalCode === null) {
    const timer = setTimeout(() => app.child.kill("SIGKILL"), ms);
    try {
      await once(app.child, "exit");
    } finally {
      clearTimeout(timer);
    }
  }
  return { code: app.child.exitCode, output: app.output() };
}

/** The fields of the app's LISTEN_FAILED line (there must be exactly one). */
function listenFailed(output: string): Record<string, unknown> {
  const lines = output.split("\n").filter((line) => line.includes("LISTEN_FAILED"));
  expect(lines, output).toHaveLength(1);
  return JSON.parse(lines[0] ?? "") as Record<string, unknown>;
}

/** Each app with a real database and Redis, so that what it opened must be closed before it exits. */
async function environment(overrides: Record<string, string>): Promise<Record<string, string>> {
  return {
    ...createTestMerchant().env,
    DATABASE_URL: database.url,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    HOST: "127.0.0.1",
    PORT: String(await freePort()),
    DASHBOARD_PORT: String(await freePort()),
    WORKER_HEALTH_PORT: String(await freePort()),
    DASHBOARD_SESSION_SECRET: "test-secret-test-secret-test-secret-0123",
    ...overrides,
  };
}

describe("an app that cannot listen", () => {
  it("a port in use: LISTEN_FAILED naming the address, the app's port setting and EADDRINUSE; exit 78", async () => {
    const [ingressPort, dashboardPort, workerPort] = [await heldPort(), await heldPort(), await heldPort()];
    const cases = [
      {
        app: startApp("ingress", await environment({ PORT: String(ingressPort) })),
        port: ingressPort,
        setting: "PORT",
      },
      {
        app: startApp("dashboard", await environment({ DASHBOARD_PORT: String(dashboardPort) })),
        port: dashboardPort,
        setting: "DASHBOARD_PORT",
      },
      {
        // The second worker of `npm start`: its port is WORKER_HEALTH_PORT + WORKER_INDEX.
        app: startApp("worker", await environment({ WORKER_HEALTH_PORT: String(workerPort - 1), WORKER_INDEX: "1" })),
        port: workerPort,
        setting: "WORKER_HEALTH_PORT (+ WORKER_INDEX 1)",
      },
    ];
    apps.push(...cases.map((c) => c.app));
    for (const { app, port, setting } of cases) {
      const { code, output } = await exitOf(app);
      expect({ app: app.name, code }, output).toEqual({ app: app.name, code: 78 });
      expect(listenFailed(output)).toMatchObject({
        level: 60,
        code: "LISTEN_FAILED",
        address: `127.0.0.1:${port}`,
        setting,
        cause: "EADDRINUSE",
        msg: `cannot listen on 127.0.0.1:${port}: another process listens there (EADDRINUSE); stop it, or change ${setting}`,
      });
      expect(output).not.toContain("    at ");
    }
  }, 60_000);

  it("a HOST that is no address of this machine: LISTEN_FAILED naming HOST and EADDRNOTAVAIL; exit 78", async () => {
    // 192.0.2.1: TEST-NET-1 (RFC 5737), an address no machine has. A name that does not resolve (ENOTFOUND) is
    // reported the same way: packages/config/test/listen.test.ts.
    const env = await environment({ HOST: "192.0.2.1" });
    const started = (["ingress", "dashboard", "worker"] as const).map((name) => startApp(name, env));
    apps.push(...started);
    for (const app of started) {
      const { code, output } = await exitOf(app);
      expect({ app: app.name, code }, output).toEqual({ app: app.name, code: 78 });
      const line = listenFailed(output);
      expect(line).toMatchObject({ code: "LISTEN_FAILED", setting: "HOST", cause: "EADDRNOTAVAIL" });
      expect(line.msg).toMatch(/^cannot listen on 192\.0\.2\.1:\d+: 192\.0\.2\.1 is not an address of this machine/);
      expect(output).not.toContain("    at ");
    }
  }, 60_000);
});
