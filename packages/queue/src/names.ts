/**
 * The pipeline's BullMQ queues, one per stage so each can be watched and scaled on its own:
 * ingress → `notify.parse` (decrypt, validate, classify) → `notify.apply` (one PostgreSQL transaction)
 * → `notify.publish` (optional events for the merchant's systems). `notify.dead` holds dead letters.
 */
export const QueueName = {
  Parse: "notify.parse",
  Apply: "notify.apply",
  Publish: "notify.publish",
  Dead: "notify.dead",
} as const;

export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export const ALL_QUEUES: readonly QueueName[] = Object.values(QueueName);
