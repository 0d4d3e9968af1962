import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
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

describe("root package.json scripts", () => {
  // npm passes a SIGINT/SIGTERM sent to itself on to the script's shell, and `sh -c "a && b"` (dash) does not pass it
  // on to b: without `exec`, stopping `npm start`, a cron's `timeout … npm run db:prune` or CI's `npm test` left b
  // running (test/start-npm.test.ts shows it for npm start). Each chained script therefore execs its last command.
  it("exec the last command of every `a && b` script, so a signal sent to npm reaches it", () => {
    const { scripts } = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    const chained = Object.entries(scripts).filter(([, command]) => command.includes("&&"));
    expect(chained.length).toBeGreaterThan(0);
    const withoutExec = chained
      .filter(([, command]) => !(command.split("&&").at(-1) ?? "").trim().startsWith("exec "))
      .map(([name]) => name);
    expect(withoutExec).toEqual([]);
  });
});
