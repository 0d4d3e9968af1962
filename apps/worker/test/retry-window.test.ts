import { defaultJobOptions, QueueName } from "@wpn/queue";
import { Backoffs, type Job } from "bullmq";
import { afterEach, describe, expect, it, vi } from "vitest";
import { WorkerError } from "../src/errors.ts";
import { windowBackoff } from "../src/worker.ts";

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
