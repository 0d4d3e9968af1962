import { parseDatabaseUrl } from "@wpn/db";
import { describe, expect, it } from "vitest";

describe("parseDatabaseUrl", () => {
  it("splits Prisma's schema parameter off the URL pg receives", () => {
    const target = parseDatabaseUrl("postgresql://postgres@127.0.0.1:5432/shop?schema=tenant_1&sslmode=disable");
    expect(target).toEqual({
      connectionString: "postgresql://postgres@127.0.0.1:5432/shop?sslmode=disable",
      schema: "tenant_1",
      database: "shop",
    });
  });

  it("defaults to the public schema", () => {
    expect(parseDatabaseUrl("postgresql://u@h/db").schema).toBe("public");
  });

  it("rejects a schema name that would need quoting", () => {
    expect(() => parseDatabaseUrl('postgresql://u@h/db?schema=a";drop')).toThrow(/plain identifier/);
  });
});
