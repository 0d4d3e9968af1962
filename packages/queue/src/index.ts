export { applyBackoffDelay } from "./backoff.ts";
export { type BulkAdder, type BulkEntry, createBulkAdder } from "./bulk-add.ts";
export { type CeilingAdder, createCeilingAdder } from "./ceiling-add.ts";
export { type ConnectionRole, createRedisConnection } from "./connection.ts";
export {
  type ReplayAttempt,
  type ReplayDeps,
  type ReplayOutcome,
  type ReplayRecorded,
  type ReplayStatus,
  replayAllDeadLetters,
  replayDeadLetter,
} from "./dead-letter.ts";
export { isUsableJobId } from "./job-id.ts";
export { APPLY_BACKOFF_TYPE, APPLY_JOB_NAME, type ApplyJob, applyJobSchema } from "./jobs/apply.ts";
export {
  DEAD_JOB_NAME,
  DEAD_LETTER_STAGES,
  type DeadLetter,
  type DeadLetterStage,
  deadLetterJobId,
  deadLetterSchema,
  isDeadLetterId,
} from "./jobs/dead.ts";
export { type DecodedJob, decodeJob, type JobSchema } from "./jobs/decode.ts";
export {
  isNotificationId,
  NOTIFICATION_ID_MAX_LENGTH,
  V3_ENVELOPE_ID,
  v3EnvelopeIdOf,
  v3NotificationId,
} from "./jobs/ids.ts";
export {
  PARSE_JOB_NAME,
  type ParseJob,
  type ParseJobV2,
  type ParseJobV3,
  parseJobSchema,
  parseJobV2Schema,
  parseJobV3Schema,
} from "./jobs/parse.ts";
export {
  PUBLISH_EVENT_REVISION,
  PUBLISH_EVENT_TYPES,
  type PublishEvent,
  type PublishEventType,
  type PublishJob,
  publishJobName,
  publishJobSchema,
  type RestockLine,
} from "./jobs/publish.ts";
export { ALL_QUEUES, QueueName } from "./names.ts";
export { defaultJobOptions } from "./options.ts";
export { createQueue } from "./queues.ts";
export {
  createReceiptedAdder,
  NotReplicatedError,
  type ReceiptedAdder,
  type ReceiptedEntry,
  type ReceiptedOutcome,
  type ReplicationOptions,
} from "./receipted-add.ts";
export { type Receipt, readReceipt, receiptKey, recordReceipts } from "./receipts.ts";
export { readWaitingLetters, type WaitingLetters } from "./waiting-letters.ts";
