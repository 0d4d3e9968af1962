import { defaultJobOptions, QueueName } from "@wpn/queue";
import { Backoffs, type Job } from "bullmq";
import { afterEach, describe, expect, it, vi } from "vitest";
import { WorkerError } from "../src/errors.ts";
import { windowBackoff } from "../src/worker.ts";
import { failureVerdict, windowEnd, windowWaitDelay } from "../src/workers/stage.ts";

/**
 * A fault retried "within the window" (a key that does not fit yet, an order not committed yet) must be retried until
 * the window's end in both stages, whatever the jitter draws: the queue's attempts must not run out first (with the
 * parse queue's former 12 attempts they did, ~17–34 min into the default 1 h window). Each retry is scheduled through
 * BullMQ's own `Backoffs.calculate` with the queue's default options and the worker's strategy (which only apply's
 * type uses: parse jobs keep BullMQ's built-in exponential type, see options.ts, and so end at most one doubling
 * after the window).
 */

const HOUR_MS = 3_600_000;
/** The stage dead-letters a window fault once `now + 100 ms` reaches the window's end (stage.ts, WINDOW_MARGIN_MS). */
const MARGIN_MS = 100;

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/**
 * Runs a window fault through the queue's attempts as the stage does (stage.ts: dead-lettered when the window is over
 * or on the last attempt): what ended it, and when (ms after the job's creation).
 */
function retryUntilDeadLettered(
  queue: typeof QueueName.Parse | typeof QueueName.Apply,
  windowMs: number,
  draw: number,
): { endedBy: "window" | "attempts"; at: number } {
  const options = defaultJobOptions[queue];
  const attempts = options.attempts ?? 1;
  const created = Date.UTC(2026, 11, 1);
  const job = { timestamp: created, opts: options } as unknown as Job;
  const fault = new WorkerError("DECRYPT_FAILED", "window", "key does not fit yet");
  const strategy = windowBackoff(windowMs, () => 0);
  vi.useFakeTimers();
  vi.spyOn(Math, "random").mockReturnValue(draw);
  let at = 0;
  for (let attempt = 1; ; attempt++) {
    if (at + MARGIN_MS >= windowMs) return { endedBy: "window", at };
    if (attempt >= attempts) return { endedBy: "attempts", at };
    vi.setSystemTime(created + at);
    at += Backoffs.calculate(options.backoff as never, attempt, fault, job, strategy) as number;
  }
}

describe("retries within the window", () => {
  for (const queue of [QueueName.Parse, QueueName.Apply] as const) {
    for (const [label, windowMs] of [
      ["the default 1 h window", HOUR_MS],
      ["the longest window allowed (3 days)", 72 * HOUR_MS],
    ] as const) {
      it(`${queue}: ${label} ends before the attempts, with the shortest and the longest jitter`, () => {
        for (const draw of [0, 0.999]) {
          const { endedBy, at } = retryUntilDeadLettered(queue, windowMs, draw);
          // Dead-lettered because the window ended, not earlier because the attempts ran out…
          expect(endedBy, `draw ${draw}`).toBe("window");
          expect(at + MARGIN_MS, `draw ${draw}`).toBeGreaterThanOrEqual(windowMs);
          // …apply's at the window's end (its strategy caps the retries there), parse's within one doubling of it.
          if (queue === QueueName.Apply) expect(at, `draw ${draw}`).toBe(windowMs);
          else expect(at, `draw ${draw}`).toBeLessThanOrEqual(2 * windowMs);
        }
      });
    }
  }
});

describe("after a PostgreSQL outage", () => {
  it("apply: a retry is scheduled by the window counted from the outage's end, not at once as past the window", () => {
    const options = defaultJobOptions[QueueName.Apply];
    const created = Date.UTC(2026, 11, 1);
    // The outage ended 2 h after the job's creation, past its 1 h window; the job fails a minute later.
    const outageEndedAt = created + 2 * HOUR_MS;
    const job = { timestamp: created, opts: options } as unknown as Job;
    const fault = new WorkerError("ORDER_NOT_PAID", "window", "refund before its payment");
    vi.useFakeTimers();
    vi.setSystemTime(outageEndedAt + 60_000);
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    const delay = (endedAt: number) =>
      Backoffs.calculate(
        options.backoff as never,
        14,
        fault,
        job,
        windowBackoff(HOUR_MS, () => endedAt),
      );
    // The 14th retry's doubling (2^13 s) capped at the end of the window that began when PostgreSQL came back.
    expect(delay(outageEndedAt)).toBe(HOUR_MS - 60_000);
    // Counted from the creation alone the window is over: applyBackoffDelay's least delay, 100 ms.
    expect(delay(0)).toBe(100);
  });
});

/**
 * A PostgreSQL outage gives every waiting job a whole window from its end (windowEnd), whatever the job has used of its
 * attempts: it meets the outage, is put back without using one, and runs again after it. Late in the longest window
 * (3 days) its attempts run out before that new window's end — with the shortest jitter after 13 attempts or more,
 * with the middle one after 18 — up to the whole window early. Before, the job was dead-lettered then: the order,
 * payment or second charge it waited for, acknowledged during the outage and still to be parsed and applied, found it
 * dead (a refund's TRANSACTION_NOT_SEEN instead of decided TRANSACTION_MISMATCH at the window's end). Now its last
 * attempt waits for the window without being used (stage.ts, failureVerdict). Computed with BullMQ's own
 * `Backoffs.calculate`, the queues' real options (20 attempts from 1 s), the worker's strategy and the stage's rule
 * and wait (failureVerdict, windowWaitDelay).
 */
describe("the longest window, with a PostgreSQL outage met after n attempts", () => {
  const WINDOW_MS = 72 * HOUR_MS;
  /** How long the outage lasted: the job waits it out without using an attempt. */
  const OUTAGE_MS = 10 * 60_000;

  function run(queue: typeof QueueName.Parse | typeof QueueName.Apply, outageAfter: number, draw: number) {
    const options = defaultJobOptions[queue];
    const maxAttempts = options.attempts ?? 1;
    const created = Date.UTC(2026, 11, 1);
    const job = { timestamp: created, opts: options, attemptsMade: 0 } as unknown as Job & { attemptsMade: number };
    const fault = new WorkerError("ORDER_NOT_FOUND", "window", "no order yet");
    let outageEndedAt = 0;
    const strategy = windowBackoff(WINDOW_MS, () => outageEndedAt);
    vi.useFakeTimers();
    vi.spyOn(Math, "random").mockReturnValue(draw);
    let now = created;
    /** The latest wait before a run, ms: a window ended by a run of the job lies at most this far behind it. */
    let lastDelay = 0;
    for (let runs = 0; runs < 1_000; runs++) {
      if (job.attemptsMade === outageAfter && outageEndedAt === 0) {
        // This run meets the outage: put back (no attempt used) until it ends, then runs again.
        now += OUTAGE_MS;
        outageEndedAt = now;
      }
      vi.setSystemTime(now);
      const end = windowEnd(created, created, WINDOW_MS, outageEndedAt);
      const windowOver = now + MARGIN_MS >= end;
      const attempt = job.attemptsMade + 1;
      const verdict = failureVerdict({ policy: "window", windowOver, attempt, maxAttempts, canWait: true });
      if (verdict === "dead") return { endedBy: windowOver ? "window" : "attempts", now, end, attempt, lastDelay };
      if (verdict === "retry") {
        lastDelay = Backoffs.calculate(options.backoff as never, attempt, fault, job, strategy) as number;
        job.attemptsMade = attempt;
      } else {
        lastDelay = windowWaitDelay(job, end);
      }
      now += lastDelay;
    }
    throw new Error("the job never ended");
  }

  for (const queue of [QueueName.Parse, QueueName.Apply] as const) {
    it(`${queue}: dead-lettered by the window that began at the outage's end, never earlier by the attempts`, () => {
      const early: string[] = [];
      for (const draw of [0, 0.5, 0.999]) {
        for (let outageAfter = 1; outageAfter < (defaultJobOptions[queue].attempts ?? 1); outageAfter++) {
          const ended = run(queue, outageAfter, draw);
          if (ended.endedBy !== "window") {
            const short = ((ended.end - ended.now) / HOUR_MS).toFixed(1);
            early.push(`draw ${draw}, outage after ${outageAfter} attempts: attempt ${ended.attempt} ${short} h early`);
            continue;
          }
          // Apply's at the window's end (its strategy caps the retries there), parse's within one doubling of it.
          if (queue === QueueName.Apply) expect(ended.now, `draw ${draw}, after ${outageAfter}`).toBe(ended.end);
          else expect(ended.now - ended.end, `draw ${draw}, after ${outageAfter}`).toBeLessThanOrEqual(ended.lastDelay);
        }
      }
      expect(early).toEqual([]);
    });
  }
});
