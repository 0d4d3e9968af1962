import { randomBytes } from "node:crypto";
import { createTestMerchant, freePort, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { afterAll, describe, expect, it } from "vitest";
import { eventually, type RunningApp, startApp } from "./support/processes.ts";

// ioredis puts the arguments of a command Redis refused on its error (`command.args`); for the handshake that is
// `HELLO 3 AUTH <user> <password>`. An app that logged such an error whole printed REDIS_URL's password.

const running: RunningApp[] = [];

afterAll(async () => {
  await Promise.all(running.map((app) => app.stop()));
});

/** REDIS_URL for the test Redis with a user it does not know: every connection attempt is refused WRONGPASS. */
function refusedRedisUrl(password: string): string {
  const url = new URL(TEST_REDIS_URL);
  url.username = "wpn_no_such_user";
  url.password = password;
  return url.toString();
}

describe("a Redis that refuses REDIS_URL's password", () => {
  it("is logged by the dashboard and the ingress (debug) without the password", async () => {
    const password = `redis-pw-${randomBytes(8).toString("hex")}`;
    const env = {
      ...createTestMerchant().env,
      HOST: "127.0.0.1",
      REDIS_URL: refusedRedisUrl(password),
      QUEUE_PREFIX: testQueuePrefix("redis-password"),
      // Nothing listens on port 1: both apps start without PostgreSQL (MIGRATIONS_UNCHECKED).
      DATABASE_URL: "postgresql://postgres@127.0.0.1:1/wechatpay_notify_test",
    };
    const apps = [
      startApp("dashboard", { ...env, DASHBOARD_PORT: String(await freePort()) }),
      startApp("ingress", { ...env, PORT: String(await freePort()), LOG_LEVEL: "debug" }),
    ];
    running.push(...apps);
    for (const app of apps) {
      await eventually(
        async () => (app.output().includes("WRONGPASS") ? true : undefined),
        20_000,
        () => `${app.name} to log Redis's refusal:\n${app.output()}`,
      );
      expect(app.output(), app.name).not.toContain(password);
    }
  }, 30_000);
});
