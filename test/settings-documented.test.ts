import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ENV_NAMES, envSchema } from "@wpn/config";
import { createTestMerchant } from "@wpn/testing";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { repoRoot } from "./support/processes.ts";

// The settings tables of the READMEs and the environment docker-compose.yml gives the apps, against the schema that
// reads them (packages/config/src/schema.ts): a renamed or misspelt setting in either is read by no process — the
// operator sets it and nothing changes — and a default the table states wrongly is the one an operator plans with.
// (.env.example, which lists every setting, has its own test in packages/config.)

/** Every setting's value when nothing sets it: the schema's defaults, over the one merchant it requires. */
const defaults = (() => {
  const parsed = envSchema.safeParse(createTestMerchant().env);
  if (!parsed.success) throw new Error(`the schema refused the test merchant: ${parsed.error.message}`);
  return parsed.data as Record<string, unknown>;
})();

/** The rows of the tables in `file` whose first cell names settings: [names, default cell]. */
function settingRows(file: string): { names: string[]; fallback: string }[] {
  const rows: { names: string[]; fallback: string }[] = [];
  for (const line of readFileSync(join(repoRoot, file), "utf8").split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    // "| `NAME` | default | meaning |": cells[0] is empty (before the first bar).
    const first = cells[1] ?? "";
    if (!/^`[A-Z][A-Z0-9_]+`/.test(first)) continue;
    rows.push({ names: [...first.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1] ?? ""), fallback: cells[2] ?? "" });
  }
  return rows;
}

const SETTINGS_TABLES = ["README.md", "apps/dashboard/README.md"];

describe("the READMEs' settings tables", () => {
  it.each(SETTINGS_TABLES)("%s names only settings the schema reads", (file) => {
    const rows = settingRows(file);
    expect(rows.length).toBeGreaterThan(5);
    const unknown = rows.flatMap((row) => row.names).filter((name) => !ENV_NAMES.includes(name));
    expect(unknown).toEqual([]);
  });

  it.each(SETTINGS_TABLES)("%s states the schema's default where it gives a number or false/true", (file) => {
    const wrong: string[] = [];
    for (const { names, fallback } of settingRows(file)) {
      // "3000 / 3001" for "`PORT` / `DASHBOARD_PORT`"; a cell in words ("—", "random per process", a URL) is not compared.
      const values = fallback.split(" / ").map((v) => v.trim().match(/^`?(\d+|true|false)`?(?:\s|$)/)?.[1]);
      if (values.length !== names.length) continue;
      names.forEach((name, i) => {
        const stated = values[i];
        // No schema default: the process computes it (DASHBOARD_SESSION_IDLE_SECONDS: 900, or the TTL when shorter).
        if (stated !== undefined && defaults[name] !== undefined && String(defaults[name]) !== stated)
          wrong.push(`${name}: table ${stated}, schema ${String(defaults[name])}`);
      });
    }
    expect(wrong).toEqual([]);
  });
});

describe("docker-compose.yml's app environment", () => {
  it("sets only settings the schema reads, each to a value it accepts", () => {
    const compose = parse(readFileSync(join(repoRoot, "docker-compose.yml"), "utf8"), { merge: true }) as {
      "x-app": { environment: Record<string, string> };
      services: Record<string, { environment?: Record<string, string> | string[]; image?: string }>;
    };
    const environments = [
      compose["x-app"].environment,
      ...Object.values(compose.services)
        .filter((service) => service.image === "wechatpay-notify")
        .map((service) => service.environment ?? {}),
    ];
    for (const environment of environments) {
      const entries = Array.isArray(environment)
        ? environment.map((line) => line.split("=", 2) as [string, string])
        : Object.entries(environment);
      expect(entries.map(([name]) => name).filter((name) => !ENV_NAMES.includes(name))).toEqual([]);
      // ${NAME:-default} as Compose reads it with nothing set: the default.
      const values = Object.fromEntries(
        entries.map(([name, value]) => [name, String(value).replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, "$1")]),
      );
      const parsed = envSchema.safeParse({ ...createTestMerchant().env, ...values });
      expect(
        parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`),
      ).toEqual([]);
    }
  });
});
