import { z } from "zod";
import { NOTIFICATION_ID_MAX_LENGTH } from "./ids.ts";

/**
 * Payload of a `notify.parse` job: a verified notification exactly as received. The ingress writes it, the
 * parse worker reads it; both use this schema. The body stays as received: encrypted for APIv3 (`resource`) and
 * APIv2 refunds (`req_info`), but an APIv2 payment is clear XML and carries the payer's `openid` (the dashboard's
 * queue views hide it). `v` is the payload version: a worker rejects versions it
 * does not know instead of misreading them.
 */
export const parseJobV3Schema = z.object({
  v: z.literal(1),
  api: z.literal("v3"),
  /**
   * Notification id, also the BullMQ job id: `v3:<mchid>:<envelope id>` (jobs/ids.ts) — WeChat's envelope id alone
   * in a job an older ingress queued.
   */
  id: z.string().min(1).max(NOTIFICATION_ID_MAX_LENGTH),
  /** Merchant the notification was addressed to (route parameter, or the default merchant). */
  mchid: z.string().min(1),
  /** When the ingress accepted it, ms since the epoch. */
  receivedAt: z.number().int().nonnegative(),
  headers: z.object({
    timestamp: z.string(),
    nonce: z.string(),
    serial: z.string(),
    signatureType: z.string(),
    requestId: z.string().optional(),
  }),
  /** Raw body, UTF-8, byte-for-byte what was verified. */
  body: z.string(),
});

export const parseJobV2Schema = z.object({
  v: z.literal(1),
  api: z.literal("v2"),
  /** Derived id: `v2:pay:<mchid>.<transaction_id>[.FAIL]` (.FAIL unless return_code and result_code are SUCCESS) or `v2:refund:<mchid>.<refund_id>.<refund_status>[.<sub_mch_id>]` (the outer sub_mch_id in partner mode). */
  id: z.string().min(1).max(NOTIFICATION_ID_MAX_LENGTH),
  kind: z.enum(["pay", "refund"]),
  mchid: z.string().min(1),
  receivedAt: z.number().int().nonnegative(),
  /** Raw XML body, UTF-8. */
  body: z.string(),
});

export const parseJobSchema = z.discriminatedUnion("api", [parseJobV3Schema, parseJobV2Schema]);

export type ParseJobV3 = z.infer<typeof parseJobV3Schema>;
export type ParseJobV2 = z.infer<typeof parseJobV2Schema>;
export type ParseJob = z.infer<typeof parseJobSchema>;

/** BullMQ job name of parse jobs (one name per payload family keeps bull-board readable). */
export const PARSE_JOB_NAME = "notification";
