/**
 * Notification ids. One id names a notification everywhere: the BullMQ job id of its parse and apply jobs (the
 * job's hash is `<prefix>:<queue>:<id>`, next to the queue's own keys `wait`, `meta`, `events`, …), its ingress
 * receipt `<prefix>:receipt:<id>` and its `Notification` row. So every id the ingress makes is
 * `<api>:<merchant part>:<key>` — three ':'-separated parts (what BullMQ allows in a custom id) beginning with
 * `v3` or `v2`, so no value from outside ever names one of the queue's keys by itself, and the merchant whose keys
 * authenticated the notification is part of it, so one tenant cannot take another's id:
 * - APIv3: `v3:<mchid>:<envelope id>`;
 * - APIv2: `v2:pay:<mchid>.<transaction_id>[.FAIL]`, `v2:refund:<mchid>.<refund_id>.<refund_status>[.<sub_mch_id>]`
 *   (notify-v2.ts of the ingress).
 * A job queued by an ingress before the APIv3 form existed carries WeChat's envelope id alone; workers still
 * process it under that id (a resend of it made since is another job and row, recorded DUPLICATE of the first, not
 * applied: upsertParsedNotification of @wpn/db). So two predicates: isNotificationId, what the ingress may make, and
 * isUsableJobId (../job-id.ts), what a lookup by a given id — the dashboard's pages, bull-board, a dead-letter
 * replay — may read as a job: any id BullMQ could have stored, old bare ids included, but none of the queue's own keys.
 */

/**
 * Longest notification id a job may carry, characters: the `id` of a parse job, the `notificationId` of its apply and
 * publish jobs (jobs/parse.ts, apply.ts, publish.ts), so the workers refuse a longer one as JOB_INVALID — after the
 * ingress acknowledged it, and on every replay. The ingress therefore refuses such an id itself, before Redis
 * (apps/ingress src/enqueue/intake.ts). What WeChat sends stays far below it: APIv3 `v3:<mchid>:<envelope id>` is at
 * most 3 + 32 + 1 + 64 = 100 with a 6–32-digit mchid (the rule of @wpn/config's MCHID_PATTERN, which the ingress
 * applies to every merchant it serves) and V3_ENVELOPE_ID below; an APIv2 refund id with WeChat's documented field
 * lengths (refund_id 32, refund_status ≤ 11, sub_mch_id 32) at most 10 + 32 + 1 + 32 + 1 + 11 + 1 + 32 = 120.
 */
export const NOTIFICATION_ID_MAX_LENGTH = 128;

/** `v3|v2:<…>:<…>`: three ':'-separated non-empty parts, the first `v3` or `v2`. */
const NOTIFICATION_ID = /^v[23]:[^:]+:[^:]+$/;

/**
 * Whether `id` is of the forms the ingress makes (above), the only ids it queues and records receipts under.
 * Three parts is BullMQ's own rule for a custom id with ':' (bullmq Job#validateOptions; an integer-looking id, which
 * it refuses too, cannot have this form), which the ingress's batch script does not check and the worker's apply jobs
 * and dead-letter ids depend on. The `v3`/`v2` part means the job's hash `<prefix>:notify.parse:<id>` is never one of
 * the queue's own keys (`wait`, `meta`, `events`, `metrics:<state>:data`, `<job id>:lock`, …) whatever the other
 * parts hold, so every such id is also an isUsableJobId. Its length is not checked here: the ingress checks it against
 * NOTIFICATION_ID_MAX_LENGTH.
 */
export function isNotificationId(id: string): boolean {
  return NOTIFICATION_ID.test(id);
}

/**
 * WeChat's APIv3 envelope `id` as accepted: 1–64 ASCII letters, digits, '-' and '_'. WeChat documents
 * `string(36)` ("回调通知的唯一编号"), UUID-like, its example `EV-2018022511223320873`; the rest is room for
 * ids we have not seen. Never ':' (a part of the notification id) nor anything Redis or a log line would treat
 * specially.
 */
export const V3_ENVELOPE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The notification id of an APIv3 notification that the keys of merchant `mchid` verified. */
export function v3NotificationId(mchid: string, envelopeId: string): string {
  return `v3:${mchid}:${envelopeId}`;
}

/**
 * WeChat's own id of an APIv3 notification id: the envelope id of `v3:<mchid>:<envelope id>`, or the whole id of a
 * job queued under the envelope id alone (an ingress from before the `v3:` form).
 */
export function v3EnvelopeIdOf(notificationId: string): string {
  return notificationId.startsWith("v3:") ? notificationId.slice(notificationId.lastIndexOf(":") + 1) : notificationId;
}
