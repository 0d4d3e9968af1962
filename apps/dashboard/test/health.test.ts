import { loadConfig } from "@wpn/config";
import { createDb } from "@wpn/db";
import { createRedisConnection } from "@wpn/queue";
import { createTestMerchant } from "@wpn/testing";
import { expect, it } from "vitest";
import { buildApp } from "../src/app.ts";

it("reports not ready (503) when PostgreSQL and Redis do not answer, while staying live", async () => {
  // Nothing listens on port 1: both checks fail fast (connection refused) or hit the check timeout.
  const url = "postgresql://postgres@127.0.0.1:1/nowhere";
  const config = loadConfig({ ...createTestMerchant().env, DATABASE_URL: url, REDIS_URL: "redis://127.0.0.1:1" });
  const db = createDb({ url, connectTimeoutMs: 500 });
  const redis = createRedisConnection(config.REDIS_URL, "admin", { lazyConnect: true, maxRetriesPerRequest: 0 });
  redis.on("error", () => undefined);
  const app = await buildApp({ config, db, redis });
  try {
    expect((await app.inject({ method: "GET", url: "/health/live" })).statusCode).toBe(200);
    const ready = await app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.statusCode).toBe(503);
    const body = ready.json() as { status: string; checks: { postgres: string; redis: string } };
    expect(body.status).toBe("unavailable");
    // Public route: up/down only, never the reason (it can name a database role or host).
    expect(body.checks).toEqual({ postgres: "down", redis: "down" });
  } finally {
    await app.close();
    await db.close();
    redis.disconnect();
  }
});
