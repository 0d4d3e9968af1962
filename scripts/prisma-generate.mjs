// Runs `prisma generate` without network access. Prisma 7's `prisma-client` generator needs no engine binary,
// but the CLI still looks for its schema engine at start-up and tries to download it; pointing
// PRISMA_SCHEMA_ENGINE_BINARY at any existing file satisfies that check (generation never executes it).
// Merchants behind the mainland-China network hit the same download failure, so this is the supported path.
//
// `--if-stale` (`npm start`, each workspace's `npm test -w …`): generates only when the client (gitignored, so absent from a fresh
// clone) is missing or was made from other inputs — prisma/schema.prisma and the installed Prisma packages' versions
// (`npm ci` may change those). The inputs are compared by content (a SHA-256 written beside the client after each
// generation), not by modification time, which a copy that keeps times (`cp -p`, rsync -a, tar, a Docker COPY) would
// leave older than the client. A generation takes ~4.5 s; the check, one small hash. And a generation rewrites the
// client's files in place: `npm start` regenerating on every run left a moment without them, in which a process
// starting beside it (the suite's end-to-end tests start apps while its `npm start` test runs) failed to import them.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";

const require = createRequire(import.meta.url);
const root = resolve(import.meta.dirname, "..");
const cli = require.resolve("prisma/build/index.js");
const output = resolve(root, "packages/db/src/generated");
const fingerprintFile = resolve(output, ".inputs.sha256");

/** SHA-256 of what the generated client is made from: the schema's bytes and the Prisma packages' versions. */
function inputsFingerprint() {
  const hash = createHash("sha256").update(readFileSync(resolve(root, "prisma/schema.prisma")));
  for (const pkg of ["prisma/package.json", "@prisma/client/package.json"]) {
    hash.update(`\0${pkg}@${JSON.parse(readFileSync(require.resolve(pkg), "utf8")).version}`);
  }
  return hash.digest("hex");
}

/** True when the generated client exists and was made from the inputs as they are now. */
function generatedClientIsCurrent() {
  if (!existsSync(resolve(output, "client.ts")) || !existsSync(fingerprintFile)) return false;
  return readFileSync(fingerprintFile, "utf8").trim() === inputsFingerprint();
}

if (process.argv.includes("--if-stale") && generatedClientIsCurrent()) {
  console.log("Prisma client is up to date (packages/db/src/generated).");
  process.exit(0);
}
const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: "1", CHECKPOINT_DISABLE: "1" };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath;
// From the repository root, where prisma.config.ts is: `npm test -w <workspace>` runs this in the workspace's folder.
const result = spawnSync(process.execPath, [cli, "generate"], { cwd: root, stdio: ["ignore", "pipe", "inherit"], env });
if (result.status !== 0) {
  process.stdout.write(result.stdout);
  process.exit(result.status ?? 1);
}
writeFileSync(fingerprintFile, `${inputsFingerprint()}\n`);
