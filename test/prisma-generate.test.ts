import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "./support/processes.ts";

/** The .ts sources under `dir` (recursively; none when it does not exist), the generated client aside. */
function sources(dir: string): string[] {
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.parentPath.includes("generated"))
    .map((e) => readFileSync(join(e.parentPath, e.name), "utf8"));
}

describe("the generated Prisma client (gitignored) on a fresh clone", () => {
  it("each workspace whose tests load @wpn/db generates it first, so `npm test -w <workspace>` works after `npm ci`", () => {
    const needing: string[] = [];
    for (const group of ["apps", "packages"]) {
      for (const name of readdirSync(join(repoRoot, group))) {
        const dir = join(repoRoot, group, name);
        const code = [...sources(join(dir, "src")), ...sources(join(dir, "test"))];
        if (name !== "db" && !code.some((text) => /from "@wpn\/(db|testing)"/.test(text))) continue;
        needing.push(`${group}/${name}`);
        const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { scripts?: Record<string, string> };
        expect(pkg.scripts?.test, `${group}/${name}`).toMatch(
          /^node \.\.\/\.\.\/scripts\/prisma-generate\.mjs --if-stale && vitest run /,
        );
      }
    }
    expect(needing).toEqual(expect.arrayContaining(["packages/db", "packages/testing", "apps/worker"]));
  });

  it("--if-stale skips the ~4.5 s generation when the client is newer than its inputs", () => {
    const client = join(repoRoot, "packages/db/src/generated/client.ts");
    const before = statSync(client).mtimeMs;
    const started = performance.now();
    // From a workspace's folder, as `npm test -w` runs it.
    const run = spawnSync(process.execPath, ["../../scripts/prisma-generate.mjs", "--if-stale"], {
      cwd: join(repoRoot, "packages/db"),
      encoding: "utf8",
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe("Prisma client is up to date (packages/db/src/generated).\n");
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(statSync(client).mtimeMs).toBe(before);
  });
});
