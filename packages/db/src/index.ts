export type { BlockingSession } from "./blocking-sessions.ts";
export { createDb, type Db, type DbOptions, type DbPool, type ExtraPoolOptions, probeDatabase } from "./client.ts";
export { type DatabaseTarget, parseDatabaseUrl, quoteIdent } from "./database-url.ts";
export * from "./generated/client.ts";
export {
  DatabaseConnectTimeoutError,
  ensureDatabase,
  MIGRATE_CONNECT_TIMEOUT_MS,
  MIGRATE_DEFAULTS,
  type MigrateOptions,
  type MigrateResult,
  migrate,
  namedConnectTimeout,
} from "./migrate.ts";
export type { MigrateEvent, MigrateLog } from "./migrate-log.ts";
export {
  MIGRATIONS_DIR,
  type MigrationFile,
  MigrationFilesError,
  type MigrationPlan,
  MigrationScriptError,
  planMigration,
  readMigrations,
  splitStatements,
} from "./migration-files.ts";
export { MigrationLockWaitError } from "./migration-lock.ts";
export {
  checkFailure,
  compareMigrations,
  type MigrationState,
  MigrationStateError,
  type RecordedMigration,
  type StartupLogger,
  type VerifyMigrationsOptions,
  verifyMigrations,
  verifyMigrationsOrExit,
  type WaitForMigrationsOptions,
  waitForMigrationsOrExit,
} from "./migration-state.ts";
export { MigrationBlockedError } from "./migration-transaction.ts";
export {
  MAX_PRUNE_BATCH,
  MIN_RETENTION_DAYS,
  PRUNABLE_STATUSES,
  type PruneCounts,
  PruneError,
  type PruneOptions,
  type PruneResult,
  parseRetention,
  pruneNotifications,
  type WaitingLetters,
} from "./prune.ts";
export { classifyDbError, type DbErrorClass } from "./repositories/errors.ts";
export { findMerchantKeys, type MerchantKeys } from "./repositories/merchants.ts";
export {
  type FailureRecord,
  FINAL_NOTIFICATION_STATUSES,
  markNotificationDead,
  NotificationBatchError,
  type NotificationRowStatus,
  type ParsedNotification,
  recordNotificationFailure,
  type UpsertResult,
  upsertParsedNotification,
  upsertParsedNotifications,
} from "./repositories/notifications.ts";
export {
  applyPaymentStatement,
  applyPaymentStatements,
  PAYMENT_OUTCOMES,
  PAYMENT_REVIEW_OUTCOMES,
  type PaymentFacts,
  type PaymentOutcome,
  type PaymentResult,
  paymentStatement,
} from "./repositories/payments.ts";
export {
  countOverflowEvents,
  moveOverflowEvents,
  type OverflowMove,
  type OverflowRow,
  storeOverflowEvent,
} from "./repositories/publish-overflow.ts";
export {
  applyRefundStatement,
  REFUND_OUTCOMES,
  type RefundFacts,
  type RefundOutcome,
  type RefundResultRow,
  refundStatement,
} from "./repositories/refunds.ts";
export {
  type ReplayAlongside,
  type ReplayRecord,
  type ReplayRecordOutcome,
  recordReplay,
  recordReplayFailed,
} from "./repositories/replays.ts";
