// How `npm run db:migrate` and `npm start` run the migrator: its settings from @wpn/config, and its waits and retries
// (MIGRATION_LOCK_WAIT, MIGRATION_RETRY) as one line each on stderr, code first, as the scripts print their failures.
import type { MigrateSettings } from "@wpn/config";
import type { MigrateOptions } from "@wpn/db";

export function migrateOptions(settings: MigrateSettings): MigrateOptions {
  return {
    lockTimeoutMs: settings.MIGRATE_LOCK_TIMEOUT_MS,
    waitLimitMs: settings.MIGRATE_WAIT_SECONDS * 1_000,
    log: { warn: (event, message) => console.error(`${event.code}: ${message}`) },
  };
}
