import { z } from "zod";
import { QueueName } from "../names.ts";

/** The stages whose jobs can be dead-lettered (and replayed into). */
export const DEAD_LETTER_STAGES = [QueueName.Parse, QueueName.Apply, QueueName.Publish] as const;
export type DeadLetterStage = (typeof DEAD_LETTER_STAGES)[number];

/**
 * Payload of a `notify.dead` job: a job that will not succeed by retrying (permanent error, retries
 * exhausted, stalled too often), kept with the reason until a human replays or discards it. `data` is the
 * original job payload, verbatim, so a replay re-enqueues exactly what failed.
 */
export const deadLetterSchema = z.object({
  v: z.literal(1),
  /** Queue the job failed in; a replay puts it back there. */
  queue: z.enum(DEAD_LETTER_STAGES),
  jobName: z.string().min(1),
  jobId: z.string().min(1),
  notificationId: z.string().nullable(),
  /**
   * The out_trade_no, sub_mchid and out_refund_no the notification names, as its Notification row has them: from the
   * notification once it opened (for one refused after it opened, what its payload named: the worker README, parse
   * stage), never from one that did not. Null when it names none, or the letter's writer did not know it: a notification
   * that did not open; a job BullMQ failed itself (stalled too often), whose letter has only the apply payload's
   * out_trade_no. `subMchid` and `outRefundNo` are absent from letters of earlier releases.
   */
  outTradeNo: z.string().nullable(),
  subMchid: z.string().nullable().optional(),
  outRefundNo: z.string().nullable().optional(),
  /** Stable error code (ORDER_NOT_FOUND, DECRYPT_FAILED, JOB_INVALID, …). */
  code: z.string().min(1),
  /** One-line reason for the operator; never payload contents. */
  message: z.string(),
  attemptsMade: z.number().int().nonnegative(),
  /** ms since the epoch. */
  failedAt: z.number().int().nonnegative(),
  data: z.unknown(),
});

export type DeadLetter = z.infer<typeof deadLetterSchema>;

export const DEAD_JOB_NAME = "dead-letter";

/**
 * Job id of the dead letter of one job instance: `apply.<jobId>.<job timestamp>`. Deterministic for that
 * instance, so dead-lettering the same failure twice (the processor, then the `failed` listener after a
 * crash) keeps one letter; a replayed job is a new instance (new timestamp), so when it fails again at once
 * its letter cannot collide with the one being replayed (which is removed after the re-add). The separator
 * is not ':' because BullMQ restricts ':' in custom ids.
 */
export function deadLetterJobId(queue: DeadLetterStage, jobId: string, jobTimestamp: number): string {
  return `${queue.slice("notify.".length)}.${jobId}.${jobTimestamp}`;
}

/**
 * Whether `id` has the form of a dead letter's job id: a stage's short name, a dot, and a job id (deadLetterJobId;
 * letters of earlier releases have no `.<job timestamp>`). What an operator types where a letter id is expected (the
 * replay CLI) is checked with it: anything else — a mistyped option, an empty argument — names no letter.
 */
export function isDeadLetterId(id: string): boolean {
  return DEAD_LETTER_STAGES.some((queue) => {
    const stage = `${queue.slice("notify.".length)}.`;
    return id.startsWith(stage) && id.length > stage.length;
  });
}
