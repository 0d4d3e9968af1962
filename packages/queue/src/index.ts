export { type ConnectionRole, createRedisConnection } from "./connection.ts";
export {
  PARSE_JOB_NAME,
  type ParseJob,
  type ParseJobV2,
  type ParseJobV3,
  parseJobSchema,
  parseJobV2Schema,
  parseJobV3Schema,
} from "./jobs/parse.ts";
export { ALL_QUEUES, QueueName } from "./names.ts";
export { defaultJobOptions } from "./options.ts";
export { createQueue } from "./queues.ts";
export { type Receipt, readReceipt, receiptKey, recordReceipts, touchReceipts } from "./receipts.ts";
