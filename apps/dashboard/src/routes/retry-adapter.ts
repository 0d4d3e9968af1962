import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import type { Job, JobType, Queue, RetryOptions } from "bullmq";
import type { FastifyBaseLogger } from "fastify";
import type { Redis } from "ioredis";
import { getJobOrStandIn, getJobsOrStandIns } from "./unreadable-job.ts";

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
 * count): the jobs bull-board retries are those its handlers get from `getJob` and `getJobs`. Those read a job whose
 * hash is not JSON as a stand-in (unreadable-job.ts) rather than failing the queue's whole list. Everything else is
 * bull-board's own.
 */
export class FullRetryAdapter extends BullMQAdapter {
  constructor(
    private readonly source: Queue,
    /** The connection the queue uses (the dashboard's admin connection), for the stall count and unreadable jobs. */
    private readonly redis: Redis,
    /** Where an unreadable job is logged (JOB_UNREADABLE). */
    private readonly log: FastifyBaseLogger,
    options?: ConstructorParameters<typeof BullMQAdapter>[1],
  ) {
    super(source, options);
  }

  override async getJob(id: string): Promise<Job | undefined> {
    const job = await getJobOrStandIn(this.source, this.redis, this.log, id);
    return job && this.withFullRetry(job);
  }

  override async getJobs(...[statuses, start, end]: Parameters<BullMQAdapter["getJobs"]>): Promise<Job[]> {
    // bull-board's statuses are BullMQ's job types and `paused`, which BullMQ 6 no longer has (it keeps a paused
    // queue's jobs in `waiting`): passed on as bull-board's own adapter passes them.
    const types = statuses as JobType[];
    const jobs = await getJobsOrStandIns(this.source, this.redis, this.log, types, start, end);
    return jobs.map((job) => this.withFullRetry(job));
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
