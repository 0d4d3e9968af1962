import { DEFAULT_DATABASE_URL, loadDatabaseUrl, readEnvironment } from "@wpn/config";
import { afterEach, describe, expect, it, vi } from "vitest";

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
});
