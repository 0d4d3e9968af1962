import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { dockerignoreExcludes } from "./support/dockerignore.ts";
import { repoRoot } from "./support/processes.ts";

// The README and .env.example tell the merchant to put the real keys under ./keys (the merchant API private key
// apiclient_key.pem among them) and `npm start` writes .env and .dev/keys: none of them may reach a commit
// (`git add -A`) or an image layer (the Dockerfile's `COPY . .`). Compose mounts ./keys at run time instead.
const secrets = [
  "keys/apiclient_key.pem",
  "keys/wechatpay_public_key.pem",
  "keys/platform_cert.pem",
  ".env",
  ".dev/keys/env",
  ".dev/keys/wechatpay_public_key.private.pem",
  // A key file put anywhere else in the tree.
  "deploy/merchant-1900000109/apiclient_key.pem",
];
// What the image and the repository need: must stay in.
const needed = [".env.example", "apps/sim/src/keys.ts", "packages/wechatpay/test/fixtures/wechatpay-vectors.json"];

function gitIgnores(path: string): boolean {
  // --no-index: by the .gitignore rules alone, whether or not the file exists or is tracked.
  const result = spawnSync("git", ["check-ignore", "--no-index", "-q", path], { cwd: repoRoot });
  if (result.status !== 0 && result.status !== 1) throw new Error(`git check-ignore failed: ${result.stderr}`);
  return result.status === 0;
}

describe("secrets stay out of git and out of the Docker build context", () => {
  it(".gitignore covers every key and settings file", () => {
    for (const path of secrets) expect(gitIgnores(path), path).toBe(true);
    for (const path of needed) expect(gitIgnores(path), path).toBe(false);
  });

  it(".dockerignore keeps them from `COPY . .`", () => {
    const dockerignore = readFileSync(resolve(repoRoot, ".dockerignore"), "utf8");
    for (const path of secrets) expect(dockerignoreExcludes(dockerignore, path), path).toBe(true);
    for (const path of needed) expect(dockerignoreExcludes(dockerignore, path), path).toBe(false);
  });

  it("reads .dockerignore patterns as Docker does", () => {
    const rules = "node_modules\n**/*.pem\nkeys\n!keys/README.md\n/bench/results/\n";
    expect(dockerignoreExcludes(rules, "node_modules/x/index.js")).toBe(true);
    expect(dockerignoreExcludes(rules, "apps/x/node_modules/y.js")).toBe(false);
    expect(dockerignoreExcludes(rules, "a.pem")).toBe(true);
    expect(dockerignoreExcludes(rules, "a/b/c.pem")).toBe(true);
    expect(dockerignoreExcludes(rules, "keys/README.md")).toBe(false);
    expect(dockerignoreExcludes(rules, "apps/keys/x")).toBe(false);
    expect(dockerignoreExcludes(rules, "bench/results/run.json")).toBe(true);
    expect(dockerignoreExcludes("*.pem", "a/b.pem")).toBe(false);
  });
});
