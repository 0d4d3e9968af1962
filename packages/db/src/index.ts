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
  type ReplayRecord,
  recordNotificationFailure,
  recordReplay,
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
  applyRefundStatement,
  REFUND_OUTCOMES,
  type RefundFacts,
  type RefundOutcome,
  type RefundResultRow,
  refundStatement,
} from "./repositories/refunds.ts";
