// Runs `prisma generate` without network access. Prisma 7's `prisma-client` generator needs no engine binary,
// but the CLI still looks for its schema engine at start-up and tries to download it; pointing
// PRISMA_SCHEMA_ENGINE_BINARY at any existing file satisfies that check (generation never executes it).
// Merchants behind the mainland-China network hit the same download failure, so this is the supported path.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const cli = require.resolve("prisma/build/index.js");
const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: "1", CHECKPOINT_DISABLE: "1" };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath;
const result = spawnSync(process.execPath, [cli, "generate"], { stdio: ["ignore", "pipe", "inherit"], env });
if (result.status !== 0) {
  process.stdout.write(result.stdout);
  process.exit(result.status ?? 1);
}
