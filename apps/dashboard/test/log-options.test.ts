import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { CSRF_TOKEN_HEADERS } from "../src/auth/csrf.ts";
import { dashboardLoggerOptions } from "../src/log-options.ts";

describe("the dashboard's log redaction", () => {
  it("censors a request's CSRF token under every header name the CSRF check accepts", () => {
    const lines: string[] = [];
    const logger = pino(dashboardLoggerOptions("info"), { write: (line: string) => lines.push(line) });
    const headers = Object.fromEntries(CSRF_TOKEN_HEADERS.map((name) => [name, `token-of-${name}`]));
    logger.info({ req: { method: "POST", url: "/dead-letters/replay", headers } }, "a request");
    const logged = JSON.parse(lines[0] ?? "{}") as { req?: { headers?: Record<string, string> } };
    expect(lines.join("")).not.toContain("token-of-");
    expect(logged.req?.headers).toEqual(Object.fromEntries(CSRF_TOKEN_HEADERS.map((name) => [name, "[redacted]"])));
  });
});
