import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_DATABASE_URL, loadDatabaseUrl, readEnvironment } from "@wpn/config";
import { afterEach, describe, expect, it, vi } from "vitest";
import { repoRoot } from "./support/processes.ts";

// prisma.config.ts gives the Prisma CLI (`prisma migrate deploy`, `migrate status`) the DATABASE_URL the apps use.
// An empty DATABASE_URL (`DATABASE_URL=` in a unit file, a CI variable set to nothing) is unset for the apps, which
// then use the local default; prisma.config.ts used `??` and handed Prisma the empty string instead.
afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

async function prismaUrl(): Promise<unknown> {
  const { default: config } = await import("../prisma.config.ts");
  return config.datasource?.url;
}

describe("prisma.config.ts", () => {
  it("an empty DATABASE_URL: the apps' default, as the apps read it", async () => {
    vi.stubEnv("DATABASE_URL", "");
    expect(loadDatabaseUrl(readEnvironment())).toBe(DEFAULT_DATABASE_URL);
    expect(await prismaUrl()).toBe(DEFAULT_DATABASE_URL);
  });

  it("a DATABASE_URL: that one", async () => {
    vi.stubEnv("DATABASE_URL", "postgresql://shop@db.internal:5432/shop?schema=wpn");
    expect(await prismaUrl()).toBe("postgresql://shop@db.internal:5432/shop?schema=wpn");
  });

  // Prisma loads this file for every command — `prisma generate`, which `npm run db:migrate` and `npm run db:prune` run
  // first, and `prisma migrate deploy`/`status`. A .env it could not read (a directory: Docker's bind mount of a missing
  // file; no permission) threw the ConfigError into Prisma's loader: "Failed to load config file … Error: ConfigError:
  // …", status 1, where the apps and the scripts print `configuration error: …` and exit 78 (README, "Configuration").
  it("a .env it cannot read: the apps' one line and status 78, from every Prisma command", () => {
    const cwd = mkdtempSync(join(tmpdir(), "wpn-prisma-config-"));
    try {
      mkdirSync(join(cwd, ".env"));
      const cli = createRequire(import.meta.url).resolve("prisma/build/index.js");
      const config = join(repoRoot, "prisma.config.ts");
      const run = spawnSync(process.execPath, [cli, "migrate", "status", "--config", config], {
        cwd,
        encoding: "utf8",
        env: { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: "1", CHECKPOINT_DISABLE: "1" },
        timeout: 60_000,
      });
      expect(run.stderr).toContain(`configuration error: .env file ${join(cwd, ".env")} cannot be read (EISDIR)\n`);
      expect(run.stderr).not.toContain("Failed to load config file");
      expect(run.status).toBe(78);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 90_000);
});
