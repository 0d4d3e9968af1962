import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { verifyPassword } from "../src/auth/password.ts";

// `npm run hash-password -w @wpn/dashboard`: the password on stdin (piped here), the entry on stdout. `--help` is a
// request for its usage, not a mistake: it was taken for a user name without a role (exit 64, npm's error block).

const USAGE = "usage: hash-password [<name> <viewer|operator>]  (password on stdin)\n";

function hashPasswordCli(args: string[], stdin = "") {
  const run = spawnSync(process.execPath, ["--import", "tsx", "src/cli/hash-password.ts", ...args], {
    cwd: resolve(import.meta.dirname, ".."),
    input: stdin,
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe("hash-password CLI", () => {
  it.each([["--help"], ["-h"]])("%s prints the usage on stdout and exits 0, reading no password", (flag) => {
    const run = hashPasswordCli([flag], "password 123\n");
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe(USAGE);
    expect(run.stderr).toBe("");
  });

  it("bad usage says what is wrong, with the usage, on stderr, and exits 64", () => {
    const run = hashPasswordCli(["alice"], "password 123\n");
    expect(run.status).toBe(64);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(`give both a name and a role, or neither\n${USAGE}`);
  });

  it("prints a DASHBOARD_USERS entry for the piped password", async () => {
    const run = hashPasswordCli(["alice", "operator"], "password 123\n");
    expect(run.status, run.stderr).toBe(0);
    const [name, role, hash] = run.stdout.trimEnd().split(":");
    expect([name, role]).toEqual(["alice", "operator"]);
    expect(await verifyPassword("password 123", hash ?? "")).toBe(true);
  });
});
