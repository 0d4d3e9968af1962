import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PAYMENT_OUTCOMES, REFUND_OUTCOMES } from "@wpn/db";
import { WECHATPAY_ERROR_CODES } from "@wpn/wechatpay";
import { describe, expect, it } from "vitest";
import { INGRESS_ERRORS } from "../apps/ingress/src/errors.ts";
import { WORKER_ERROR_CODES } from "../apps/worker/src/errors.ts";
import { repoRoot } from "./support/processes.ts";

// Stable codes are the contract with a merchant's operators: an alert, a log line or a refusal names a code, and the
// README an operator reads for that process must say what it means and what to do. This test collects every code
// the processes can emit — the registries, plus the literals the sources write where a code goes — and finds each
// in its README. A code added without its line in the README fails here.

/** A SCREAMING_SNAKE code, at least two characters. */
const CODE = "[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)*";

/**
 * Where a source puts a code, each with the expression that holds it:
 * - `code: "X"`, `code = "X"`, `readonly code: "X" | "Y"`, `code: known ? c : "INTERNAL"` (errors, log fields);
 * - `error: "X"` (the dashboard's JSON error bodies), `outcome: "X"` and `reason: "X"` (the worker's counted
 *   outcomes and the reasons of ignored notifications);
 * - `new SomethingError("X", …)` (error classes whose first argument is the code);
 * - `sendError(request, reply, status, "X", …)` (the dashboard's error pages and bodies).
 * The expression ends at `;`, `,`, a brace or a line end, so one field never swallows the next. Comparisons
 * (`error.code === "ECONNRESET"`) read a code someone else set and are not matched.
 */
const FIELD = /\b(?:code|error|outcome|reason)\s*(?::|=(?!=))\s*([^;,\n{}]*)/g;
const ERROR_CONSTRUCTOR = /\bnew (\w+Error)\(\s*("[^"\n]*")/g;
const SEND_ERROR = /\bsendError\(\s*[^,]+,\s*[^,]+,\s*[^,]+,\s*([^,]+),/g;
const LITERAL = new RegExp(`"(${CODE})"`, "g");
/** `reason: \`TRADE_STATE_${state}\``: the code is the prefix plus WeChat's value; the README documents the prefix. */
const TEMPLATE_PREFIX = new RegExp(`\`(${CODE}_)\\$`, "g");

// No allow-list of literals: every literal these patterns find is a code an operator sees. What is not — a
// comparison, the ConfigError argument below — is excluded by its shape, not by its name.

/**
 * Error classes whose first constructor argument is not their code. ConfigError's first argument is the setting
 * that is wrong (`new ConfigError("DASHBOARD_USERS", …)`); its code is the class's own `code = "CONFIG_INVALID"`.
 */
const CONSTRUCTORS_WITHOUT_CODE: ReadonlySet<string> = new Set(["ConfigError"]);

/** The TypeScript sources under `dir` (or `dir` itself, a file), without tests and generated code. */
function sourceFiles(dir: string): string[] {
  const root = join(repoRoot, dir);
  if (root.endsWith(".ts")) return [root];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts"))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((file) => !file.includes("/generated/") && !file.includes("/test/"));
}

/** Every code literal written in a code's place in `dirs`' sources. */
function codeLiterals(...dirs: string[]): Set<string> {
  const found = new Set<string>();
  for (const file of dirs.flatMap(sourceFiles)) {
    const text = readFileSync(file, "utf8");
    const expressions = [
      ...[...text.matchAll(FIELD)].map((m) => m[1] ?? ""),
      ...[...text.matchAll(SEND_ERROR)].map((m) => m[1] ?? ""),
      ...[...text.matchAll(ERROR_CONSTRUCTOR)]
        .filter((m) => !CONSTRUCTORS_WITHOUT_CODE.has(m[1] ?? ""))
        .map((m) => m[2] ?? ""),
    ];
    for (const written of expressions) {
      // `x.code === "ENOENT" ? … : …` compares with a code someone else set (here Node's); it emits nothing.
      const expression = written.replace(/[!=]==?\s*"[^"]*"/g, "");
      for (const m of expression.matchAll(LITERAL)) found.add(m[1] ?? "");
      for (const m of expression.matchAll(TEMPLATE_PREFIX)) found.add(m[1] ?? "");
    }
  }
  return found;
}

/** The codes `readme` does not mention as a whole word (`CODE`, plain CODE, or a prefix like `TRADE_STATE_<x>`). */
function undocumented(readme: string, codes: Iterable<string>): string[] {
  const text = readFileSync(join(repoRoot, readme), "utf8");
  return [...new Set(codes)]
    .filter((code) => !new RegExp(`(?<![A-Z0-9_])${code}${code.endsWith("_") ? "" : "(?![A-Z0-9_])"}`).test(text))
    .sort();
}

describe("every stable code is documented where its operator reads", () => {
  it("finds the codes it checks (the extraction still works)", () => {
    // Sentinels for the shapes above (field, template prefix, multi-line sendError, JSON error body, type union,
    // class property, the ConfigError exclusion): if a refactor moves codes out of them, this fails instead of the
    // README checks passing vacuously.
    expect(codeLiterals("apps/ingress/src").has("REDIS_EVICTION_POLICY")).toBe(true);
    expect(codeLiterals("apps/worker/src").has("IGNORED")).toBe(true);
    expect(codeLiterals("apps/worker/src").has("TRADE_STATE_")).toBe(true);
    expect(codeLiterals("apps/dashboard/src").has("NOTHING_SELECTED")).toBe(true);
    expect(codeLiterals("apps/dashboard/src").has("CSRF_ORIGIN")).toBe(true);
    expect(codeLiterals("packages/db/src").has("PRUNE_RETENTION_TOO_SHORT")).toBe(true);
    expect(codeLiterals("packages/db/src").has("DB_NOT_MIGRATED")).toBe(true);
    expect(codeLiterals("packages/config/src").has("CONFIG_INVALID")).toBe(true);
    expect(codeLiterals("apps/dashboard/src").has("DASHBOARD_USERS")).toBe(false);
  });

  it("ingress: INGRESS_ERRORS and the codes its sources log → apps/ingress/README.md", () => {
    const codes = [...Object.keys(INGRESS_ERRORS), ...codeLiterals("apps/ingress/src")];
    expect(undocumented("apps/ingress/README.md", codes)).toEqual([]);
  });

  it("worker: WORKER_ERROR_CODES, payment and refund outcomes, and the codes its sources log → apps/worker/README.md", () => {
    // Also the codes of the code the worker alone runs: packages/queue's job decoding (JOB_INVALID, …) and
    // @wpn/db's repositories (the DB_* classifier codes the worker retries or dead-letters on, the batch checks).
    const codes = [
      ...Object.keys(WORKER_ERROR_CODES),
      ...PAYMENT_OUTCOMES,
      ...REFUND_OUTCOMES,
      ...codeLiterals("apps/worker/src", "packages/queue/src", "packages/db/src/repositories"),
    ];
    expect(undocumented("apps/worker/README.md", codes)).toEqual([]);
  });

  it("dashboard: the codes its sources answer and log → apps/dashboard/README.md", () => {
    expect(undocumented("apps/dashboard/README.md", codeLiterals("apps/dashboard/src"))).toEqual([]);
  });

  it("the rest of @wpn/db, @wpn/config and scripts (every process, migrate, prune) → README.md", () => {
    // Start-up checks (DB_NOT_MIGRATED, DB_UNUSABLE, MIGRATIONS_UNCHECKED), prune's argument checks and
    // CONFIG_INVALID reach every process or an operator's script: the root README is the page they share. A new
    // @wpn/db module lands here unless it is a repository (the worker's, above).
    const repositories = codeLiterals("packages/db/src/repositories");
    const codes = [...codeLiterals("packages/db/src", "packages/config/src", "scripts")].filter(
      (code) => !repositories.has(code),
    );
    expect(undocumented("README.md", codes)).toEqual([]);
  });

  it("@wpn/wechatpay: WECHATPAY_ERROR_CODES → packages/wechatpay/README.md", () => {
    expect(undocumented("packages/wechatpay/README.md", WECHATPAY_ERROR_CODES)).toEqual([]);
  });
});
