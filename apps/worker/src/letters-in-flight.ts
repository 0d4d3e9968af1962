import type { QueueName } from "@wpn/queue";
import type { Logger } from "pino";
import { oneLine } from "./errors.ts";
import type { WorkerMetrics } from "./metrics.ts";

/** A dead letter the `failed` listener is writing. */
export interface LetterInFlight {
  readonly queue: QueueName;
  readonly jobId: string;
  readonly notificationId: string | null;
  /** The letter is in notify.dead (deadLetter's onLetterWritten); the notification's marking may still be running. */
  written: boolean;
}

/**
 * The letters the `failed` listener is writing. BullMQ has already failed their jobs, so nothing runs them again:
 * close() waits for these (within the jobs' grace) before it closes Redis and PostgreSQL, else a shutdown between the
 * two would leave a failed job without its letter, or its notification not marked DEAD. Those still being written
 * when the grace is over are reported one by one (`reportCut`) before the process exits: a letter never written is
 * the operator's to replay from the failed list, and nothing else would name it (before, it was dropped silently).
 */
export class LettersInFlight {
  readonly #writing = new Map<Promise<void>, LetterInFlight>();
  /** Reported already (DEAD_LETTER_FAILED, or DEAD_NOT_RECORDED at a shutdown): not again. */
  readonly #reported = new WeakSet<LetterInFlight>();

  constructor(private readonly deps: { log: Logger; metrics: WorkerMetrics }) {}

  /** Tracks `letter` while `write` (deadLetter) runs; a failed write is reported DEAD_LETTER_FAILED. */
  track(letter: LetterInFlight, write: Promise<unknown>): void {
    const tracked: Promise<void> = write
      .then(
        () => undefined,
        (error: unknown) => this.#failed(letter, oneLine(error), "could not dead-letter a failed job"),
      )
      .finally(() => this.#writing.delete(tracked));
    this.#writing.set(tracked, letter);
  }

  /** Resolves once every letter being written now has been written or has failed. */
  async settled(): Promise<void> {
    await Promise.all(this.#writing.keys());
  }

  /** The shutdown did not wait for the letters still being written (`timeoutMs`): each is logged, and counted, now. */
  reportCut(timeoutMs: number): void {
    for (const letter of this.#writing.values()) {
      if (!letter.written) {
        this.#failed(
          letter,
          `WORKER_SHUTDOWN_TIMEOUT_MS (${timeoutMs} ms) passed before the letter was written`,
          "could not dead-letter a failed job: the shutdown did not wait; replay it from bull-board's failed list",
        );
      } else if (!this.#reported.has(letter)) {
        // Its replay works: the letter is in notify.dead (and db:prune keeps the row it names).
        this.#reported.add(letter);
        this.deps.log.error(
          { ...fieldsOf(letter), code: "DEAD_NOT_RECORDED", err: "shutdown timeout" },
          "dead letter written, notification not marked: the shutdown did not wait",
        );
      }
    }
  }

  /** Logged and counted DEAD_LETTER_FAILED, once: the shutdown may have reported it before the write gave up. */
  #failed(letter: LetterInFlight, err: string, msg: string): void {
    if (this.#reported.has(letter)) return;
    this.#reported.add(letter);
    this.deps.metrics.errors.inc({ queue: letter.queue, code: "DEAD_LETTER_FAILED" });
    this.deps.log.error({ ...fieldsOf(letter), code: "DEAD_LETTER_FAILED", err }, msg);
  }
}

function fieldsOf(letter: LetterInFlight) {
  return { queue: letter.queue, jobId: letter.jobId, notificationId: letter.notificationId };
}
