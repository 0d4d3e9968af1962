import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
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

  it("--if-stale skips the ~4.5 s generation when the client was made from the inputs as they are", () => {
    const client = join(repoRoot, "packages/db/src/generated/client.ts");
    const before = statSync(client).mtimeMs;
    // From a workspace's folder, as `npm test -w` runs it.
    const run = spawnSync(process.execPath, ["../../scripts/prisma-generate.mjs", "--if-stale"], {
      cwd: join(repoRoot, "packages/db"),
      encoding: "utf8",
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe("Prisma client is up to date (packages/db/src/generated).\n");
    expect(statSync(client).mtimeMs).toBe(before);
  });

  it("--if-stale regenerates after a schema change even when the changed file's time is older than the client", () => {
    // A copy of the repository's generation inputs, so the shared client other test files load is left alone.
    const copy = mkdtempSync(join(tmpdir(), "wpn-generate-"));
    mkdirSync(join(copy, "scripts"));
    mkdirSync(join(copy, "prisma"));
    copyFileSync(join(repoRoot, "scripts/prisma-generate.mjs"), join(copy, "scripts/prisma-generate.mjs"));
    copyFileSync(join(repoRoot, "prisma/schema.prisma"), join(copy, "prisma/schema.prisma"));
    copyFileSync(join(repoRoot, "prisma.config.ts"), join(copy, "prisma.config.ts"));
    symlinkSync(join(repoRoot, "node_modules"), join(copy, "node_modules"));
    const generate = (...args: string[]) =>
      spawnSync(process.execPath, [join(copy, "scripts/prisma-generate.mjs"), ...args], {
        cwd: copy,
        encoding: "utf8",
      });
    try {
      expect(generate().status).toBe(0);
      expect(generate("--if-stale").stdout).toContain("up to date");
      // A field added by a copy that keeps file times (cp -p, rsync -a, tar): the schema is now older than the client.
      const schema = join(copy, "prisma/schema.prisma");
      writeFileSync(schema, readFileSync(schema, "utf8").replace("model Sku {", "model Sku {\n  addedByTest String?"));
      const anHourAgo = new Date(Date.now() - 3_600_000);
      utimesSync(schema, anHourAgo, anHourAgo);
      const again = generate("--if-stale");
      expect(again.status, again.stderr).toBe(0);
      expect(again.stdout).not.toContain("up to date");
      expect(readFileSync(join(copy, "packages/db/src/generated/models/Sku.ts"), "utf8")).toContain("addedByTest");
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  }, 60_000);
});
