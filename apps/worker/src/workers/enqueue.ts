import { createBulkAdder } from "@wpn/queue";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { oneLine, WorkerError } from "../errors.ts";

/** A job to add under a deterministic id (a re-run of the job that adds it then adds nothing new). */
export interface JobToAdd {
  name: string;
  data: object;
  jobId: string;
}

/** Resolves with the number of jobs added: a job whose id exists (a re-run's copy) is left as it is, not counted. */
export type JobEnqueuer = (jobs: readonly JobToAdd[]) => Promise<number>;

/**
 * Adds jobs to `queue` in one Redis script call per batch (`createBulkAdder`: each job as `queue.add` writes it,
 * with the queue's default job options), through `redis` — the connection the Queue was created with. A Redis
 * failure becomes a retryable QUEUE_UNAVAILABLE, so the job that was enqueueing runs again and adds them again
 * (collapsed by the job ids).
 */
export function jobEnqueuer(queue: Queue, redis: Redis): JobEnqueuer {
  const adder = createBulkAdder(queue, redis);
  return async (jobs) => {
    try {
      return await adder.add(
        jobs.map(({ name, data, jobId }) => ({ name, id: jobId, data })),
        Date.now(),
      );
    } catch (error) {
      throw WorkerError.of(
        "QUEUE_UNAVAILABLE",
        `enqueue of ${jobs.length} job(s) to ${queue.name} failed: ${oneLine(error)}`,
        { cause: error },
      );
    }
  };
}
