import { type Processor, Worker, type WorkerOptions } from "bullmq";

/**
 * A BullMQ Worker whose every main loop is watched: a `run()` that fails calls `onRunFailed`, whoever called it.
 *
 * startWorker is not the only caller. The outage pause (`pause(true)`, db-outage.ts) lets the loop end once the jobs it
 * holds are done — run() resolves, within seconds of the pause — and `resume()` then calls `run()` itself and drops
 * the promise (bullmq 6.7.0, Worker.resume). Watched only where startWorker called it, a loop restarted that way that
 * died was an unhandled rejection (main.ts exits 1 at once, abandoning the other stage's jobs), not WORKER_RUN_FAILED
 * (/health/live 503, a graceful close, exit 1).
 */
export class WatchedWorker extends Worker {
  readonly #onRunFailed: (error: unknown) => void;
  /** Jobs whose processor runs now (see `runningJobs`). */
  readonly #running: { count: number };

  constructor(name: string, processor: Processor, options: WorkerOptions, onRunFailed: (error: unknown) => void) {
    const running = { count: 0 };
    // Never autorun: BullMQ's constructor would call run() before #onRunFailed is set.
    super(
      name,
      async (job, token, signal) => {
        running.count += 1;
        try {
          return await processor(job, token, signal);
        } finally {
          running.count -= 1;
        }
      },
      { ...options, autorun: false },
    );
    this.#onRunFailed = onRunFailed;
    this.#running = running;
  }

  /**
   * Jobs whose processor has not returned yet: what a shutdown whose grace runs out abandons. A close can outlast the
   * grace with none (BullMQ's close waits for Redis: an outage), and must not then report jobs abandoned.
   */
  get runningJobs(): number {
    return this.#running.count;
  }

  /** The loop's promise; its failure is already reported, so a caller (BullMQ's resume()) may drop it. */
  override run(): Promise<void> {
    const running = super.run();
    running.catch(this.#onRunFailed);
    return running;
  }
}
