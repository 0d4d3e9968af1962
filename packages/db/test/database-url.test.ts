import { loadDatabaseUrl } from "@wpn/config";
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

  it("accepts exactly the schema names @wpn/config lets through (config repeats the rule)", () => {
    const names = [
      "public",
      "tenant_1",
      "_x",
      "A",
      "a".repeat(63),
      "a".repeat(64),
      "1a",
      "bad-name",
      "a b",
      "é",
      "a;b",
    ];
    for (const name of names) {
      const url = `postgresql://u@h/db?schema=${encodeURIComponent(name)}`;
      const config = (() => {
        try {
          return loadDatabaseUrl({ DATABASE_URL: url }) === url;
        } catch {
          return false;
        }
      })();
      const db = (() => {
        try {
          return parseDatabaseUrl(url).schema === name;
        } catch {
          return false;
        }
      })();
      expect(config, name).toBe(db);
    }
  });
});
