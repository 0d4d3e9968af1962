import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createTestMerchant } from "@wpn/testing";
import { describe, expect, it } from "vitest";
import { collectOutput, repoRoot } from "./support/processes.ts";

// Each app reads `.env` from its working directory. One that exists but cannot be read — a directory, which a Docker
// bind mount of a missing file creates, or a file the service's user may not read — is a configuration fault like a
// malformed value: `configuration error: …` and exit 78. Before, readFileSync's EISDIR/EACCES was thrown out of the
// entry point: Node's stack trace and exit 1, which a supervisor restarts for ever.
const tsx = pathToFileURL(join(repoRoot, "node_modules/tsx/dist/loader.mjs")).href;

describe("an unreadable .env", () => {
  it.each(["apps/ingress/src/main.ts", "apps/worker/src/main.ts", "apps/dashboard/src/main.ts"])(
    "stops %s with exit 78 and one line naming the file",
    async (entry) => {
      const cwd = mkdtempSync(join(tmpdir(), "wpn-env-file-"));
      mkdirSync(join(cwd, ".env"));
      const child = spawn(process.execPath, ["--import", tsx, join(repoRoot, entry)], {
        cwd,
        env: { ...process.env, ...createTestMerchant().env, NODE_ENV: "test" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const output = collectOutput(child);
      const [code] = await once(child, "exit");
      expect(output()).toBe(`configuration error: .env file ${join(cwd, ".env")} cannot be read (EISDIR)\n`);
      expect(code).toBe(78);
    },
    30_000,
  );
});
