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

export default defineConfig({
  test: {
    pool: "forks",
    // The JSON report is what .ci/run counts (its last line, "N passed, N failed"); the default reporter is for people.
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: workspaces.map(([name, dir]) => ({
      extends: true,
      test: { name, include: [`${dir}/**/*.test.ts`], exclude: ["**/node_modules/**"] },
    })),
  },
});
