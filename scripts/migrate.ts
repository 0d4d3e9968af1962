// `npm run db:migrate`: creates the database if needed and applies prisma/migrations (see packages/db/src/migrate.ts).
// Used by Docker Compose's one-shot `migrate` service and by operators; `npm start` does the same itself.
import { userInfo } from "node:os";
import { DEFAULT_DATABASE_URL, loadMigrateSettings, readEnvironment } from "@wpn/config";
import { ensureDatabase, MIGRATIONS_DIR, migrate } from "@wpn/db";
import { exitOnFailure } from "./database-errors.ts";
import { migrateOptions } from "./migrate-options.ts";

const env = readEnvironment();
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
