// `npm run db:migrate`: creates the database if needed and applies prisma/migrations (see packages/db/src/migrate.ts).
// Used by Docker Compose's one-shot `migrate` service and by operators; `npm start` does the same itself.
import { DEFAULT_DATABASE_URL, readEnvironment } from "@wpn/config";
import { ensureDatabase, migrate } from "@wpn/db";

const url = readEnvironment().DATABASE_URL ?? DEFAULT_DATABASE_URL;
await ensureDatabase(url);
const { applied, alreadyApplied } = await migrate(url);
console.log(`applied ${applied.length} migration(s) ${applied.join(", ")}; ${alreadyApplied.length} already applied`);
