/**
 * Names of the keys BullMQ keeps beside a queue's jobs, `<prefix>:<queue>:<name>` (bullmq QueueKeys; `''` is the
 * queue's own prefix). A job is the hash `<prefix>:<queue>:<job id>`, so a job id equal to one of these names is
 * that key: a list, a stream or a counter (reading it as a job fails with WRONGTYPE), or the queue's `meta` hash
 * (read as a phantom job; an add would write into it).
 */
const QUEUE_KEY_NAMES: ReadonlySet<string> = new Set([
  "",
  "active",
  "wait",
  "waiting-children",
  "paused",
  "id",
  "delayed",
  "prioritized",
  "stalled-check",
  "completed",
  "failed",
  "stalled",
  "repeat",
  "limiter",
  "meta",
  "events",
  "pc",
  "marker",
  "de",
]);

/**
 * Whether `id` can be a BullMQ job id of ours. BullMQ refuses some custom job ids (bullmq Job#validateOptions):
 * integer-looking ids, and ids with ':' unless they have exactly three ':'-separated parts (our
 * `v2:pay:<mchid>.<transaction_id>`) — the batch script of the ingress adds jobs without those client-side checks,
 * and the worker's apply jobs reuse the ids. It does not refuse the names of the queue's own keys
 * (QUEUE_KEY_NAMES) nor `metrics:<state>:data` (the three-part key of its metrics list), which are not jobs either:
 * this does. The dashboard and the replay look up no job under such an id (there is none). Lenient on purpose: jobs,
 * letters and rows from before the `v3:<mchid>:<id>` form carry WeChat's id alone and are still looked up; what the
 * ingress itself queues is the narrower isNotificationId (jobs/ids.ts).
 */
export function isUsableJobId(id: string): boolean {
  if (QUEUE_KEY_NAMES.has(id) || id.startsWith("metrics:")) return false;
  if (`${Number.parseInt(id, 10)}` === id) return false;
  return !id.includes(":") || id.split(":").length === 3;
}
