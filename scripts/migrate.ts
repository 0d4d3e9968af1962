// `npm run db:migrate`: creates the database if needed and applies prisma/migrations (see packages/db/src/migrate.ts).
// Used by Docker Compose's one-shot `migrate` service and by operators; `npm start` does the same itself.
import { userInfo } from "node:os";
import { DEFAULT_DATABASE_URL, loadMigrateSettings, readEnvironmentOrExit } from "@wpn/config";
import { ensureDatabase, MIGRATIONS_DIR, migrate } from "@wpn/db";
import { exitOnFailure } from "./database-errors.ts";
import { migrateOptions } from "./migrate-options.ts";
import { takeNoArguments } from "./no-arguments.ts";

const USAGE = "usage: npm run db:migrate";
const HELP = `${USAGE}
Creates the database DATABASE_URL names if it does not exist, then applies the migrations of prisma/migrations it
has not applied yet, recording them in _prisma_migrations as \`prisma migrate deploy\` does. Takes no arguments.
Settings: DATABASE_URL, MIGRATE_LOCK_TIMEOUT_MS, MIGRATE_WAIT_SECONDS (README.md, "Database migrations").
Exit codes: 0 applied (or nothing to apply), 1 failed, 2 a refused argument, 78 a refused setting.`;

// Arguments first, before any setting or connection: `--help` must never migrate (it did: it took no arguments, and
// applied every migration whatever it was given).
takeNoArguments(USAGE, HELP, "MIGRATE_ARGUMENT_INVALID");

const env = readEnvironmentOrExit();
// Quoted back in a failure's explanation even when the setting itself was refused.
let url = env.DATABASE_URL || DEFAULT_DATABASE_URL;
try {
  const settings = loadMigrateSettings(env);
  url = settings.DATABASE_URL;
  await ensureDatabase(url);
  const { applied, alreadyApplied } = await migrate(url, MIGRATIONS_DIR, migrateOptions(settings));
  const names = applied.length > 0 ? `: ${applied.join(", ")}` : "";
  console.log(`applied ${applied.length} migration(s)${names}; ${alreadyApplied.length} already applied`);
} catch (error) {
  exitOnFailure(error, { databaseUrl: url, osUser: userInfo().username, rerun: "npm run db:migrate" }, env);
}
