import { ErrorCode } from "bullmq";

/**
 * BullMQ's report, as a Worker `error` event, that this worker no longer holds the lock of a job it is running: the
 * lock expired while the process could not renew it (stopped by SIGSTOP, a VM or GC pause, cut off from Redis) and
 * the stalled-job check gave the job to another worker, or that one has finished it since. What this worker then does
 * with the job is refused — renewing the lock (`could not renew lock for job …`), moving the job to completed, failed
 * or delayed (`Missing lock for job … moveToFinished` / `moveToDelayed`: JobLockNotExist; `Lock mismatch for job …`:
 * JobLockMismatch, another worker holds it now). Harmless: the other run applies the notification, and the database
 * makes a second run of it change nothing. Not an error to alert on, unlike the Worker's other `error` events.
 */
export function isLockLost(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  return (
    code === ErrorCode.JobLockNotExist ||
    code === ErrorCode.JobLockMismatch ||
    error.message.startsWith("could not renew lock for job ")
  );
}
