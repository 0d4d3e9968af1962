import type { Job } from "bullmq";
import type { Redis } from "ioredis";

/**
 * Field of a job's own BullMQ hash (`<prefix>:<queue>:<job id>`) recording when a worker first started it (ms since
 * the epoch), for the unknown-order window (stage.ts, windowEnd). BullMQ's `processedOn` is overwritten at every
 * start, so it gives the first one only while `attemptsStarted` is 1. Kept with the job like OUTAGES_MET_FIELD (gone
 * with it; a replay's re-run starts afresh).
 */
export const FIRST_RUN_FIELD = "wpnFirstRunAt";

/** The first start resolved for each Job instance (BullMQ builds one per run): the backoff strategy reads it. */
const resolved = new WeakMap<object, number>();

/** The first start `firstRunOf` resolved for this run of `job`, if it did. */
export function knownFirstRun(job: object): number | undefined {
  return resolved.get(job);
}

/**
 * When a worker first started `job` (ms since the epoch), recording it with the job when not yet recorded (one Redis
 * round trip per run, on failure paths only). Unrecorded, it is this run's start: exact on the first run; on a later
 * one (the first stalled — its process died — before anything recorded it) a later start, which only lengthens the
 * window. Only while the job's hash exists (see DatabaseOutage.countOutage); a job gone gets this run's start.
 */
export async function firstRunOf(redis: Redis, job: Job): Promise<number> {
  const known = resolved.get(job);
  if (known !== undefined) return known;
  const thisRun = job.processedOn ?? Date.now();
  const recorded = await redis.eval(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) return redis.call('HGET', KEYS[1], ARGV[1])",
    1,
    `${job.queueQualifiedName}:${job.id}`,
    FIRST_RUN_FIELD,
    String(thisRun),
  );
  const firstRun = typeof recorded === "string" ? Number(recorded) : thisRun;
  resolved.set(job, firstRun);
  return firstRun;
}
