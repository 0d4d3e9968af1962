import { MAX_OUT_TRADE_NO_LENGTH } from "@wpn/wechatpay";
import { z } from "zod";
import { NOTIFICATION_ID_MAX_LENGTH } from "./ids.ts";

/**
 * Payload of a `notify.apply` job, written by the parse worker once a notification has been decrypted,
 * validated and recorded. It carries the body exactly as received (the APIv3 `resource` and the APIv2
 * `req_info` stay encrypted; an APIv2 payment's clear XML keeps its `openid`, as in the parse job); the apply
 * worker opens it again (AES-GCM of ~1 KiB is a few µs). The clear fields are routing and log keys only.
 * `v` is the payload version: a worker rejects versions it does not know instead of misreading them.
 */
export const applyJobSchema = z.object({
  v: z.literal(1),
  /** Notification id (APIv3 id or the derived APIv2 id); also the BullMQ job id. */
  notificationId: z.string().min(1).max(NOTIFICATION_ID_MAX_LENGTH),
  api: z.enum(["v3", "v2"]),
  /** Which effect the body describes, decided by the parse stage. */
  kind: z.enum(["payment", "refund"]),
  /** Merchant the notification was addressed to; selects the keys that open the body. */
  mchid: z.string().min(1),
  /**
   * For log lines before the body is opened; the value applied is the one inside the body. Bounded as the payload
   * schemas bound it, so every value the parse stage admits fits here.
   */
  outTradeNo: z.string().min(1).max(MAX_OUT_TRADE_NO_LENGTH),
  /** When the ingress accepted the notification, ms since the epoch. */
  receivedAt: z.number().int().nonnegative(),
  /** Raw body, UTF-8, as in the parse job. */
  body: z.string(),
});

export type ApplyJob = z.infer<typeof applyJobSchema>;

/** BullMQ job name of apply jobs. */
export const APPLY_JOB_NAME = "apply";

/**
 * Backoff type of apply jobs. It is not a BullMQ built-in: the apply worker supplies the strategy
 * (exponential with jitter, but never past the deadline of a "wait for the order" retry window), so a
 * payment for an order the checkout has not committed yet gets its last try at the end of the window.
 */
export const APPLY_BACKOFF_TYPE = "notify-apply";
