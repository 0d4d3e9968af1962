import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { expect, it } from "vitest";
import { withSchema } from "../src/database.ts";

const root = resolve(import.meta.dirname, "../../..");

/** The two URLs as a fresh process with `env` sees them (they are read once, when @wpn/testing loads). */
function urlsWith(env: Record<string, string>): [string, string] {
  const script =
    'const t = await import("@wpn/testing"); console.log(JSON.stringify([t.TEST_DATABASE_BASE_URL, t.TEST_REDIS_URL]))';
  const { TEST_DATABASE_URL: _d, TEST_REDIS_URL: _r, ...inherited } = process.env;
  const run = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: root,
    env: { ...inherited, ...env },
    encoding: "utf8",
    timeout: 30_000,
  });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout);
}

it("the suite's PostgreSQL and Redis default to the local ones, and TEST_DATABASE_URL / TEST_REDIS_URL move them", () => {
  expect(urlsWith({})).toEqual([
    "postgresql://postgres@127.0.0.1:5432/wechatpay_notify_test",
    "redis://127.0.0.1:6379",
  ]);
  const compose = "postgresql://postgres:postgres@127.0.0.1:5432/wechatpay_notify_test";
  expect(urlsWith({ TEST_DATABASE_URL: compose, TEST_REDIS_URL: "redis://10.0.0.5:6380" })).toEqual([
    compose,
    "redis://10.0.0.5:6380",
  ]);
});

it("each test file's schema is added to a TEST_DATABASE_URL's own query, never swallowed by it", () => {
  expect(withSchema("postgresql://postgres@127.0.0.1:5432/t", "a_1")).toBe(
    "postgresql://postgres@127.0.0.1:5432/t?schema=a_1",
  );
  const withQuery = new URL(
    withSchema("postgresql://postgres@127.0.0.1:5432/t?sslmode=disable&application_name=suite", "a_1"),
  );
  expect(Object.fromEntries(withQuery.searchParams)).toEqual({
    sslmode: "disable",
    application_name: "suite",
    schema: "a_1",
  });
  expect(() => withSchema("postgresql://postgres@127.0.0.1:5432/t?schema=mine", "a_1")).toThrow(
    /must not choose a schema/,
  );
});
