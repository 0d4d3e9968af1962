import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot } from "./support/processes.ts";

// `npm run build` is `turbo run build`, which failed on a fresh clone before planning anything: "Could not resolve
// workspace. Missing `devEngines.packageManager` or legacy `packageManager` field in package.json" — turbo finds the
// workspaces and the lockfile through the package manager package.json names.
const require = createRequire(import.meta.url);
// Its own cache folder: turbo's default, in a git worktree, is the main checkout's .turbo.
const cacheDir = mkdtempSync(join(tmpdir(), "wpn-turbo-"));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe("turbo (npm run build)", () => {
  it("resolves the workspaces and plans the tasks of turbo.json", () => {
    const run = spawnSync(
      require.resolve("turbo/bin/turbo"),
      ["run", "build", "typecheck", "--dry=json", `--cache-dir=${cacheDir}`],
      { cwd: repoRoot, env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1" }, encoding: "utf8", timeout: 60_000 },
    );
    expect(run.status, run.stdout + run.stderr).toBe(0);
    const plan = JSON.parse(run.stdout) as { packages: string[]; tasks: { taskId: string }[] };
    expect(plan.packages).toContain("@wpn/worker");
    expect(plan.tasks.map((t) => t.taskId)).toContain("@wpn/worker#typecheck");
  });
});
