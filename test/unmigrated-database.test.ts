import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { readMigrations } from "@wpn/db";
import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import {
  createTestMerchant,
  deletePrefix,
  TEST_DATABASE_BASE_URL,
  TEST_REDIS_URL,
  testQueuePrefix,
  withSchema,
} from "@wpn/testing";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type RunningApp, repoRoot, startApp } from "./support/processes.ts";

/**
 * The apps against a real, empty schema (migrations never applied): each refuses to start, naming the migrations
 * and the command, with exit code 78. Before, each started and answered ready, and the worker failed every
 * notification (`type "NotificationStatus" does not exist`) until it was dead-lettered.
 */
const schema = `unmigrated_${Math.random().toString(36).slice(2, 10)}`;
const prefix = testQueuePrefix("unmigrated");
const apps: RunningApp[] = [];

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_BASE_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await admin((client) => client.query(`CREATE SCHEMA "${schema}"`));
});

afterAll(async () => {
  for (const app of apps) await app.stop(1_000);
  await admin((client) => client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  await deletePrefix(prefix);
});

/** Waits for the process to exit (fails if it is still running after `ms`): its exit code and output. */
async function exitOf(app: RunningApp, ms: number): Promise<{ code: number | null; output: string }> {
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

describe("an app started on a database without the committed migrations", () => {
  it("ingress, worker and dashboard each exit 78 naming the migrations and `npm run db:migrate`; no job is taken", async () => {
    const redis = createRedisConnection(TEST_REDIS_URL, "admin");
    const parse = createQueue(QueueName.Parse, redis, prefix);
    try {
      // A notification already queued: the worker must not take it (it would fail and be retried into notify.dead).
      const job = await parse.add(PARSE_JOB_NAME, { id: "unmigrated-1" } as never, { jobId: "unmigrated-1" });
      const env = {
        ...createTestMerchant().env,
        DATABASE_URL: withSchema(TEST_DATABASE_BASE_URL, schema),
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: prefix,
        HOST: "127.0.0.1",
        PORT: String(await freePort()),
        DASHBOARD_PORT: String(await freePort()),
        WORKER_HEALTH_PORT: String(await freePort()),
        DASHBOARD_SESSION_SECRET: "test-secret-test-secret-test-secret-0123",
      };
      for (const name of ["ingress", "worker", "dashboard"] as const) apps.push(startApp(name, env));
      const names = readMigrations().map((m) => m.name);
      for (const app of apps) {
        const { code, output } = await exitOf(app, 30_000);
        expect({ app: app.name, code }, output).toEqual({ app: app.name, code: 78 });
        expect(output).toContain('"code":"DB_NOT_MIGRATED"');
        expect(output).toContain(`database schema \\"${schema}\\" is not at the committed migrations`);
        expect(output).toContain(
          `${names.length} migrations (${names[0]} … ${names.at(-1)}) not applied: run \`npm run db:migrate\``,
        );
      }
      expect(await job.getState()).toBe("waiting");
      expect((await parse.getJob("unmigrated-1"))?.attemptsMade).toBe(0);
    } finally {
      await parse.close();
      redis.disconnect();
    }
  }, 60_000);

  it("a DATABASE_URL PostgreSQL refuses (no such database): ingress and worker exit 78 DB_UNUSABLE at once", async () => {
    const base = new URL(TEST_DATABASE_BASE_URL);
    const env = {
      ...createTestMerchant().env,
      // A typo in the database name: PostgreSQL answers, and refuses it (3D000).
      DATABASE_URL: `postgresql://${base.username}@${base.host}/wpn_no_such_database`,
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      HOST: "127.0.0.1",
      PORT: String(await freePort()),
      WORKER_HEALTH_PORT: String(await freePort()),
    };
    const started = [startApp("ingress", env), startApp("worker", env)];
    apps.push(...started);
    for (const app of started) {
      const { code, output } = await exitOf(app, 20_000);
      expect({ app: app.name, code }, output).toEqual({ app: app.name, code: 78 });
      expect(output).toContain('"code":"DB_UNUSABLE"');
      // The command that creates it, as db:migrate's and db:prune's own message says (before: "fix its user,
      // password or database name", to someone who had not run it yet).
      expect(output).toContain(
        'PostgreSQL has no database \\"wpn_no_such_database\\" (DATABASE_URL\'s): run `npm run db:migrate` to create it',
      );
    }
  }, 60_000);

  it("db:prune exits 1 DB_NOT_MIGRATED naming `npm run db:migrate`, not PostgreSQL's 42P01", () => {
    // Before: `npm run db:prune failed: 42P01: relation "Notification" does not exist` — a cron mail that says
    // nothing of the migrations it needs.
    const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/prune.ts", "--older-than", "90d"], {
      cwd: repoRoot,
      env: {
        ...process.env,
        DATABASE_URL: withSchema(TEST_DATABASE_BASE_URL, schema),
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: prefix,
      },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toMatch(
      new RegExp(
        `^npm run db:prune failed: DB_NOT_MIGRATED: database schema "${schema}" is not at the committed migrations: .* not applied: run \`npm run db:migrate\``,
      ),
    );
    expect(run.stdout).toBe("");
  }, 60_000);
});
