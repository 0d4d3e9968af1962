import type { Queue } from "bullmq";
import { oneLine, WorkerError } from "../errors.ts";

/** A job to add under a deterministic id (a re-run of the job that adds it then adds nothing new). */
export interface JobToAdd {
  name: string;
  data: object;
  jobId: string;
}

/**
 * Adds `jobs` to `queue` in one Redis round trip (`addBulk`: one pipeline of BullMQ add scripts), with the
 * queue's default job options. A Redis failure becomes a retryable QUEUE_UNAVAILABLE, so the job that was
 * enqueueing runs again and adds them again (collapsed by the job ids).
 */
export async function enqueueJobs(queue: Queue, jobs: readonly JobToAdd[]): Promise<void> {
  try {
    await queue.addBulk(jobs.map(({ name, data, jobId }) => ({ name, data, opts: { jobId } })));
  } catch (error) {
    throw WorkerError.of(
      "QUEUE_UNAVAILABLE",
      `enqueue of ${jobs.length} job(s) to ${queue.name} failed: ${oneLine(error)}`,
      { cause: error },
    );
  }
}
