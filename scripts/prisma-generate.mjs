// Runs `prisma generate` without network access. Prisma 7's `prisma-client` generator needs no engine binary,
// but the CLI still looks for its schema engine at start-up and tries to download it; pointing
// PRISMA_SCHEMA_ENGINE_BINARY at any existing file satisfies that check (generation never executes it).
// Merchants behind the mainland-China network hit the same download failure, so this is the supported path.
//
// `--if-stale` (each workspace's `npm test -w …`): generates only when the client (gitignored, so absent from a fresh
// clone) is missing or older than what it is made from — prisma/schema.prisma and the installed Prisma packages
// (`npm ci` rewrites those). A generation takes ~4.5 s; the check, a few stat calls.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";

const require = createRequire(import.meta.url);
const root = resolve(import.meta.dirname, "..");
const cli = require.resolve("prisma/build/index.js");

/** True when the generated client exists and is newer than every input of the generation. */
function generatedClientIsCurrent() {
  const output = resolve(root, "packages/db/src/generated/client.ts");
  if (!existsSync(output)) return false;
  const generatedAt = statSync(output).mtimeMs;
  const inputs = [
    resolve(root, "prisma/schema.prisma"),
    require.resolve("prisma/package.json"),
    require.resolve("@prisma/client/package.json"),
  ];
  return inputs.every((input) => statSync(input).mtimeMs <= generatedAt);
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
