import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import type { Job, RetryOptions } from "bullmq";
import type { Redis } from "ioredis";

/**
 * BullMQ's `Job#retry` keeps `attemptsMade` and `attemptsStarted` unless asked to reset them, and bull-board 9.10's
 * retry handlers (one job, and "retry all", which retries the jobs `getJobs` lists a page at a time) call
 * `job.retry(state)` without options: a job that had used its attempts ran once more and, should that run meet a
 * fault, was failed for good at once (measured: attemptsMade 3 of 3 → 4, failed). Reset, it has its `attempts` again,
 * with their backoff. Options of `Job#retry` since BullMQ 6.7 (`Queue#retryJobs` has none; bull-board does not use it).
 */
const RESET_ATTEMPTS: RetryOptions = { resetAttemptsMade: true, resetAttemptsStarted: true };

/**
 * BullMQ's stall count, a field of the job's hash (`stc`, raised by its moveStalledJobsToWait script; a job is failed
 * once it passes the worker's maxStalledCount). Not a RetryOption, so it is deleted here: a job failed for stalling
 * too often would otherwise be failed again by its first stall after the retry.
 */
const STALL_COUNT_FIELD = "stc";

/**
 * bull-board's BullMQ adapter whose jobs' `retry` gives them their whole budget again (RESET_ATTEMPTS, the stall
 * count): the jobs bull-board retries are those its handlers get from `getJob` and `getJobs`. Everything else is
 * bull-board's own.
 */
export class FullRetryAdapter extends BullMQAdapter {
  constructor(
    queue: ConstructorParameters<typeof BullMQAdapter>[0],
    /** The connection the queue uses (the dashboard's admin connection), for the stall count. */
    private readonly redis: Redis,
    options?: ConstructorParameters<typeof BullMQAdapter>[1],
  ) {
    super(queue, options);
  }

  override async getJob(id: string): Promise<Job | undefined> {
    const job = await super.getJob(id);
    return job && this.withFullRetry(job);
  }

  override async getJobs(...args: Parameters<BullMQAdapter["getJobs"]>): Promise<Job[]> {
    return (await super.getJobs(...args)).map((job) => this.withFullRetry(job));
  }

  /** `job`, its `retry` resetting the attempts and stalls (on this instance only: bull-board's view of it is unchanged). */
  private withFullRetry(job: Job): Job {
    const retry = job.retry.bind(job);
    job.retry = async (state, opts) => {
      // Before the job goes back, so no run of it sees the old count. bull-board retries only a failed or completed
      // job (it checks the state first), and HDEL creates nothing when the job is gone meanwhile.
      await this.redis.hdel(`${job.queueQualifiedName}:${job.id}`, STALL_COUNT_FIELD);
      await retry(state, { ...RESET_ATTEMPTS, ...opts });
    };
    return job;
  }
}
