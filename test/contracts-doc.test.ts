import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "./support/processes.ts";

// docs/contracts.md is what someone adding code to this repository follows: a contract it states wrongly is copied
// into new code. It said that each app's entry point reads process.env (none does: @wpn/config's readEnvironment is
// the one reader), and that every package lists its codes in an errors.ts (four workspaces have one).

const contracts = readFileSync(join(repoRoot, "docs/contracts.md"), "utf8");

/** The workspaces' source folders (apps/*\/src, packages/*\/src), relative to the repository. */
function sourceFolders(): string[] {
  return ["apps", "packages"].flatMap((group) =>
    readdirSync(join(repoRoot, group))
      .map((name) => join(group, name, "src"))
      .filter((folder) => existsSync(join(repoRoot, folder))),
  );
}

/** The .ts files under `folder` (relative paths), generated code left out. */
function sourceFiles(folder: string): string[] {
  return readdirSync(join(repoRoot, folder), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts") && !file.includes("generated"))
    .map((file) => join(folder, file));
}

describe("docs/contracts.md", () => {
  it("names the one source that reads process.env, and no other source reads it", () => {
    // packages/testing reads TEST_DATABASE_URL and TEST_REDIS_URL itself: the tests' settings, never the apps'.
    const readers = sourceFolders()
      .filter((folder) => !folder.startsWith(join("packages", "testing")))
      .flatMap(sourceFiles)
      .filter((file) =>
        /\bprocess\.env\b/.test(readFileSync(join(repoRoot, file), "utf8").replace(/\/\/.*|\/\*[\s\S]*?\*\//g, "")),
      );
    expect(readers).toEqual([join("packages", "config", "src", "environment.ts")]);
    const bullet = contracts.slice(contracts.indexOf("- `@wpn/config`")).split("\n- ")[0] ?? "";
    expect(bullet).toContain("readEnvironment");
  });

  it("names every errors.ts there is, and claims none more", () => {
    const files = sourceFolders()
      .map((folder) => join(folder, "errors.ts"))
      .filter((file) => existsSync(join(repoRoot, file)));
    expect(files.length).toBeGreaterThan(0);
    const line = contracts.split("\n").find((l) => l.startsWith("Error codes")) ?? "";
    const paragraph = contracts.slice(contracts.indexOf(line)).split("\n\n")[0] ?? "";
    expect(paragraph).not.toContain("each package's");
    for (const file of files) expect(paragraph).toContain(relative(repoRoot, join(repoRoot, file)));
  });
});
