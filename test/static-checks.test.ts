import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { repoRoot } from "./support/processes.ts";

// The linter/formatter and the strict type check are part of `npm test`, so CI (which runs exactly the
// README's test command) fails on a lint error or a type error like on any failing test.
const require = createRequire(import.meta.url);

function run(script: string, args: string[]) {
  return spawnSync(process.execPath, [script, ...args], { cwd: repoRoot, encoding: "utf8", timeout: 240_000 });
}

describe("static checks", () => {
  it("passes biome check (lint and formatting)", () => {
    const result = run(require.resolve("@biomejs/biome/bin/biome"), ["check", "--colors=off", "."]);
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it("type-checks under the strict tsconfig", { timeout: 240_000 }, () => {
    const result = run(require.resolve("typescript/bin/tsc"), ["-p", "tsconfig.json", "--noEmit"]);
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});
