import { Job, type JobType, type Queue } from "bullmq";
import type { FastifyBaseLogger } from "fastify";
import type { Redis } from "ioredis";
import { notJsonReason } from "../data/not-json.ts";

/**
 * Jobs for bull-board that survive one job whose hash BullMQ cannot read. BullMQ parses a job hash's JSON fields
 * (`data`, `opts`, `progress`, `parent`) as it reads the job and throws a SyntaxError for one that is not JSON (a write
 * cut short, a hand edit): `Queue.getJobs` then fails as a whole, and bull-board answered 500 for the queue's whole
 * list — the very place the dead-letter page sends an operator to look at such a letter. Such a job is replaced by a
 * stand-in (`standIn`), the others are read as usual, and each stand-in is logged with code JOB_UNREADABLE.
 */

/** `queue.getJob(id)`, or a stand-in when its hash cannot be read. */
export async function getJobOrStandIn(
  queue: Queue,
  redis: Redis,
  log: FastifyBaseLogger,
  id: string,
): Promise<Job | undefined> {
  try {
    return await queue.getJob(id);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    const reason = notJsonReason("job hash", error);
    log.warn({ code: "JOB_UNREADABLE", queue: queue.name, jobId: id, reason }, "a job's hash cannot be read");
    return standIn(queue, redis, id, reason);
  }
}

/**
 * `queue.getJobs(types, start, end)`: read as a whole (one Lua call for the ids, a read per job, as BullMQ does), and
 * only when a job of it cannot be read, again job by job with stand-ins.
 */
export async function getJobsOrStandIns(
  queue: Queue,
  redis: Redis,
  log: FastifyBaseLogger,
  types: JobType[],
  start?: number,
  end?: number,
): Promise<Job[]> {
  try {
    return await queue.getJobs(types, start, end);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    const ids = await queue.getRanges(types, start, end);
    const jobs = await Promise.all([...new Set(ids)].map((id) => getJobOrStandIn(queue, redis, log, id)));
    return jobs.filter((job): job is Job => job !== undefined);
  }
}

/**
 * A job standing in for one whose hash cannot be read: its id, name, times and failure as stored, its data the reason
 * (`{ unreadable }`), no options. Undefined when the hash is gone meanwhile. bull-board's actions on it act on the
 * job in Redis by its id, as on any job.
 */
async function standIn(queue: Queue, redis: Redis, id: string, reason: string): Promise<Job | undefined> {
  const hash = await redis.hgetall(queue.toKey(id));
  if (Object.keys(hash).length === 0) return undefined;
  const job = new Job(queue, hash.name ?? "", { unreadable: reason }, {}, id);
  const int = (value: string | undefined) => {
    const parsed = Number.parseInt(value ?? "", 10);
    return Number.isFinite(parsed) ? parsed : undefined;
  };
  job.timestamp = int(hash.timestamp) ?? 0;
  job.processedOn = int(hash.processedOn);
  job.finishedOn = int(hash.finishedOn);
  job.attemptsMade = int(hash.attemptsMade ?? hash.atm) ?? 0;
  job.failedReason = hash.failedReason ?? "";
  return job;
}
