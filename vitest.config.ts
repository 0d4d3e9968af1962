import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

// One vitest project per workspace so `npm test -w <workspace>` runs only that workspace's tests, while the
// root `npm test` runs them all. Integration tests isolate themselves (own PostgreSQL schema and BullMQ
// prefix per file), so files run in parallel. No `retry`: a flaky test is a bug to fix, not to hide.
const workspaces = [
  ["wechatpay", "packages/wechatpay"],
  ["config", "packages/config"],
  ["db", "packages/db"],
  ["queue", "packages/queue"],
  ["testing", "packages/testing"],
  ["ingress", "apps/ingress"],
  ["worker", "apps/worker"],
  ["dashboard", "apps/dashboard"],
  ["sim", "apps/sim"],
  ["system", "test"],
] as const;

/**
 * Test files run at once: vitest's default, one fewer than the cores, except on two cores, where that default (one)
 * ran the files one after another and left the machine half idle (a serial run: 553 s of CPU in 667 s, while its
 * files mostly wait: processes starting and stopping, outage windows, the timeouts under test). Two files at a time
 * on two cores fill those waits; one core keeps one.
 */
const cores = availableParallelism();
const maxWorkers = Math.max(cores - 1, Math.min(cores, 2));

export default defineConfig({
  test: {
    pool: "forks",
    maxWorkers,
    // A worker process runs its files one after another in one module graph instead of a fresh process each: the
    // imports (Prisma's client, BullMQ, Fastify…) were loaded again for every file — outside the tests themselves
    // went 40% of the workers' time. Nothing the files import keeps state at module level that a file changes; tests
    // restore what they change (fake timers, spies, stubbed variables) in their own hooks; the shared RSA pairs
    // restart per file (setupFiles run before each file either way).
    isolate: false,
    // The JSON report is what .ci/run counts (its last line, "N passed, N failed"); the default reporter is for people.
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // RSA key pairs made once per run and shared by the test files (packages/testing/src/rsa-keys.ts).
    globalSetup: ["packages/testing/src/global-setup.ts"],
    setupFiles: ["packages/testing/src/setup-file.ts"],
    projects: workspaces.map(([name, dir]) => ({
      extends: true,
      test: { name, include: [`${dir}/**/*.test.ts`], exclude: ["**/node_modules/**"] },
    })),
  },
});
