export { createDb, type Db, type DbOptions } from "./client.ts";
export { type DatabaseTarget, parseDatabaseUrl, quoteIdent } from "./database-url.ts";
export * from "./generated/client.ts";
export {
  ensureDatabase,
  MIGRATIONS_DIR,
  type MigrateResult,
  type MigrationFile,
  migrate,
  readMigrations,
} from "./migrate.ts";
