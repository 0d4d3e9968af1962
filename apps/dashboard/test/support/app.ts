import { type Config, loadConfig } from "@wpn/config";
import type { Db } from "@wpn/db";
import { createRedisConnection } from "@wpn/queue";
import {
  createTestDatabase,
  createTestMerchant,
  deletePrefix,
  TEST_REDIS_URL,
  type TestDatabase,
  testQueuePrefix,
} from "@wpn/testing";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import { buildApp } from "../../src/app.ts";
import { hashPassword } from "../../src/auth/password.ts";
import { openDashboardDb } from "../../src/database.ts";

export const PASSWORDS = { olga: "operator password 1", victor: "viewer password 1" } as const;

// Hashed once per worker process, whose test files share it (scrypt is deliberately slow).
let usersEnv: string | undefined;
function dashboardUsers(): string {
  usersEnv ??= `olga:operator:${hashPassword(PASSWORDS.olga)},victor:viewer:${hashPassword(PASSWORDS.victor)}`;
  return usersEnv;
}

export interface TestDashboard {
  app: FastifyInstance;
  config: Config;
  /** The test database; its pool (`database.db`) is the app's unless `ownDb` was asked for. */
  database: TestDatabase;
  /** The database handle the app uses: `database.db`, or with `ownDb` the dashboard's own (`openDashboardDb`). */
  db: Db;
  prefix: string;
  redis: Redis;
  close(): Promise<void>;
}

/**
 * A dashboard on its own PostgreSQL schema and BullMQ prefix, with users olga (operator) and victor (viewer). With
 * `ownDb` the app queries through the pool main.ts opens (`openDashboardDb`: the DASHBOARD_PG_* settings) rather than
 * the test database's, which stays the test's own (seeding, locks).
 */
export async function startDashboard(
  label: string,
  options: { env?: Record<string, string>; now?: () => Date; logger?: FastifyBaseLogger; ownDb?: boolean } = {},
): Promise<TestDashboard> {
  const database = await createTestDatabase(label);
  const prefix = testQueuePrefix(label);
  const merchant = createTestMerchant();
  const config = loadConfig({
    ...merchant.env,
    NODE_ENV: "test",
    DATABASE_URL: database.url,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    DASHBOARD_USERS: dashboardUsers(),
    DASHBOARD_SESSION_SECRET: "test-secret-test-secret-test-secret-0123",
    ...options.env,
  });
  const redis = createRedisConnection(TEST_REDIS_URL, "admin");
  const db = options.ownDb ? openDashboardDb(config) : database.db;
  const app = await buildApp({ config, db, redis, now: options.now, logger: options.logger });
  await app.ready();
  return {
    app,
    config,
    database,
    db,
    prefix,
    redis,
    async close() {
      await app.close();
      if (db !== database.db) await db.close();
      await database.drop();
      redis.disconnect();
      await deletePrefix(prefix);
    },
  };
}

/**
 * Another dashboard process of the same deployment as `d`: same settings (secret included), same database and Redis,
 * its own memory — a second replica, or `d` after a restart. The caller closes it; `d.close()` still owns the rest.
 */
export async function replicaOf(d: TestDashboard, options: { now?: () => Date } = {}): Promise<FastifyInstance> {
  const app = await buildApp({ config: d.config, db: d.database.db, redis: d.redis, now: options.now });
  await app.ready();
  return app;
}
