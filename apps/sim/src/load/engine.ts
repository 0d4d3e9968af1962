import { randomInt } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { setTimeout as delay } from "node:timers/promises";
import { judge, send } from "../deliver.ts";
import type { Notification } from "../notifications.ts";
import { Slots } from "./slots.ts";

/**
 * The sending half of `load`: a fixed sequence of deliveries (unique notifications plus duplicates),
 * `concurrency` requests in flight at most, optionally paced to `rate` per second (open loop: delivery i is due at
 * i / rate), stopped after `maxSeconds`. Each request is signed when it is sent; a duplicate re-sends an
 * earlier notification (same id, fresh signature), as WeChat's redeliveries do.
 *
 * With `resendScheduleMs`, a delivery that is not acknowledged is resent after each wait of the schedule in turn,
 * until acknowledged or the schedule runs out — the same Notification object signed anew, so the same envelope id
 * and body (v3) or the same transaction (v2) with a fresh timestamp, nonce and signature: what WeChat keeps and what
 * it changes between deliveries. Each delivery resends on its own (a duplicate acknowledged does not stop the
 * original's resends). `maxSeconds` bounds the whole run: a resend due after it is not sent.
 */

/**
 * Indexes of the notifications to send, in order: every index 0..unique-1 once, plus round(unique × ratio)
 * duplicates, each placed somewhere after its original (with concurrency > 1 they can overlap it).
 */
export function planSequence(unique: number, duplicateRatio: number): number[] {
  const duplicates = Math.round(unique * duplicateRatio);
  const keyed: { key: number; index: number }[] = [];
  for (let i = 0; i < unique; i++) keyed.push({ key: i, index: i });
  for (let d = 0; d < duplicates; d++) {
    const original = randomInt(unique);
    // Half-integer keys: strictly after the original (key = its index), anywhere up to the end.
    const key = original + 0.5 + randomInt(unique - original);
    keyed.push({ key, index: original });
  }
  keyed.sort((a, b) => a.key - b.key);
  return keyed.map((k) => k.index);
}

export interface EngineOptions {
  url: URL;
  sequence: readonly number[];
  notificationFor(index: number): Notification;
  concurrency: number;
  /** Deliveries per second; undefined = as fast as the concurrency allows. Resends are not paced. */
  rate?: number;
  maxSeconds: number;
  timeoutMs: number;
  /** Waits before the 1st, 2nd, … resend of an unacknowledged delivery, ms; undefined or empty = no resends. */
  resendScheduleMs?: readonly number[];
  signal: AbortSignal;
  /** `done`: first deliveries sent; `notAcknowledged`: deliveries whose latest attempt was not acknowledged. */
  onProgress?(done: number, notAcknowledged: number): void;
}

/** A delivery that ended without acknowledgement. */
export interface UnacknowledgedDelivery {
  index: number;
  /** HTTP requests made for this delivery (1 + its resends). */
  attempts: number;
  /** The verdict on its last attempt. */
  lastReason: string;
  /** Its next resend fell after `maxSeconds`. */
  cut: boolean;
}

export interface EngineResult {
  planned: number;
  /** First deliveries sent (of `planned`). */
  sent: number;
  /** HTTP requests made: first deliveries plus resends. */
  attempts: number;
  resends: number;
  elapsedMs: number;
  /** Latency of every HTTP answer, ms. */
  latencies: number[];
  /** Count by HTTP status, "timeout" or the connection error code, over every attempt. */
  answers: Record<string, number>;
  /** Deliveries acknowledged, at the first attempt or after resends. */
  acknowledged: number;
  /** Deliveries acknowledged by a resend. */
  acknowledgedAfterResend: number;
  /** Deliveries still not acknowledged at the end. */
  notAcknowledged: number;
  /** Of those, the ones whose last attempt failed to connect (exit 3 rather than 1 when all did). */
  networkErrors: number;
  /** Of those, the ones whose next resend fell after `maxSeconds`. */
  resendsCut: number;
  /** Up to 5 distinct reasons attempts were not acknowledged. */
  failureSamples: string[];
  /** Notification indexes acknowledged at least once. */
  acknowledgedIndexes: Set<number>;
  /** The deliveries of `notAcknowledged`, in the order they ended. */
  unacknowledged: UnacknowledgedDelivery[];
  stopped?: "time" | "interrupted";
}

export async function runEngine(opts: EngineOptions): Promise<EngineResult> {
  const agentOptions = { keepAlive: true, maxSockets: opts.concurrency };
  const agent = opts.url.protocol === "https:" ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const schedule = opts.resendScheduleMs ?? [];
  const result: EngineResult = {
    planned: opts.sequence.length,
    sent: 0,
    attempts: 0,
    resends: 0,
    elapsedMs: 0,
    latencies: [],
    answers: {},
    acknowledged: 0,
    acknowledgedAfterResend: 0,
    notAcknowledged: 0,
    networkErrors: 0,
    resendsCut: 0,
    failureSamples: [],
    acknowledgedIndexes: new Set(),
    unacknowledged: [],
  };
  const cache = new Map<number, Notification>();
  const notification = (index: number) => {
    let n = cache.get(index);
    if (n === undefined) {
      n = opts.notificationFor(index);
      cache.set(index, n);
    }
    return n;
  };
  const slots = new Slots(opts.concurrency);
  const started = performance.now();
  const deadline = started + opts.maxSeconds * 1000;
  /** Deliveries whose latest attempt failed and that may still be resent (the progress bar's count). */
  let failing = 0;
  const progress = () => opts.onProgress?.(result.sent, failing + result.notAcknowledged);

  /** Sleeps `ms`; false when interrupted. */
  const pause = async (ms: number): Promise<boolean> => {
    try {
      await delay(ms, undefined, { signal: opts.signal });
      return true;
    } catch (err) {
      if (!opts.signal.aborted) throw err;
      return false;
    }
  };

  /**
   * One delivery, its first attempt holding a slot the dispatcher took: attempt, then while not acknowledged and the
   * schedule lasts, wait, take a slot and resend. Ends acknowledged, unacknowledged, or uncounted when interrupted
   * during its first attempt (never sent, as before resends existed).
   */
  const runDelivery = async (index: number): Promise<void> => {
    const n = notification(index);
    /** Counted in `failing` (its first attempt failed and a resend was due). */
    let counted = false;
    const end = (delivery: Omit<UnacknowledgedDelivery, "index">, network: boolean) => {
      if (counted) failing -= 1;
      result.notAcknowledged += 1;
      if (network) result.networkErrors += 1;
      if (delivery.cut) result.resendsCut += 1;
      result.unacknowledged.push({ index, ...delivery });
      progress();
    };
    for (let attempt = 1; ; attempt++) {
      const outcome = await send(opts.url, n.sign(new Date()), {
        timeoutMs: opts.timeoutMs,
        agent,
        signal: opts.signal,
      });
      slots.release();
      if (opts.signal.aborted) {
        result.stopped = "interrupted";
        // The attempt cut short is not counted; an earlier one of this delivery was sent and not acknowledged.
        if (attempt > 1) end({ attempts: attempt - 1, lastReason: "interrupted", cut: false }, false);
        return;
      }
      result.attempts += 1;
      if (attempt === 1) result.sent += 1;
      else result.resends += 1;
      const key =
        outcome.kind === "answer" ? String(outcome.status) : outcome.kind === "timeout" ? "timeout" : outcome.code;
      result.answers[key] = (result.answers[key] ?? 0) + 1;
      if (outcome.kind === "answer") result.latencies.push(outcome.latencyMs);
      const verdict = judge(n.api, outcome);
      if (verdict.acknowledged) {
        result.acknowledged += 1;
        if (attempt > 1) result.acknowledgedAfterResend += 1;
        if (counted) failing -= 1;
        result.acknowledgedIndexes.add(index);
        progress();
        return;
      }
      if (result.failureSamples.length < 5 && !result.failureSamples.includes(verdict.reason)) {
        result.failureSamples.push(verdict.reason);
      }
      const unacknowledged = { attempts: attempt, lastReason: verdict.reason };
      const wait = schedule[attempt - 1];
      if (wait === undefined) {
        end({ ...unacknowledged, cut: false }, verdict.network);
        return;
      }
      if (!counted) {
        counted = true;
        failing += 1;
        progress();
      }
      if (performance.now() + wait > deadline) {
        result.stopped ??= "time";
        end({ ...unacknowledged, cut: true }, verdict.network);
        return;
      }
      if (!(await pause(wait)) || !(await slots.acquire(opts.signal))) {
        result.stopped = "interrupted";
        end({ ...unacknowledged, cut: false }, verdict.network);
        return;
      }
    }
  };

  // Only the deliveries not yet ended are held (a run may plan a million). One that throws (a bug: deliveries turn
  // every HTTP trouble into an outcome) stops the dispatching; the run throws once the others have ended.
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  try {
    for (let position = 0; position < opts.sequence.length && failure === undefined; position++) {
      if (opts.signal.aborted) {
        result.stopped = "interrupted";
        break;
      }
      if (performance.now() >= deadline) {
        result.stopped ??= "time";
        break;
      }
      if (opts.rate !== undefined) {
        const due = started + (position / opts.rate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) {
          if (due >= deadline) {
            result.stopped ??= "time";
            break;
          }
          if (!(await pause(wait))) {
            result.stopped = "interrupted";
            break;
          }
        }
      }
      if (!(await slots.acquire(opts.signal))) {
        result.stopped = "interrupted";
        break;
      }
      // A slot frees when a request ends: by then the run may be over.
      if (performance.now() >= deadline) {
        slots.release();
        result.stopped ??= "time";
        break;
      }
      const delivery = runDelivery(opts.sequence[position] as number);
      inFlight.add(delivery);
      delivery.then(
        () => inFlight.delete(delivery),
        (error: unknown) => {
          inFlight.delete(delivery);
          failure ??= { error };
        },
      );
    }
    await Promise.allSettled(inFlight);
    if (failure !== undefined) throw failure.error;
  } finally {
    agent.destroy();
  }
  result.elapsedMs = performance.now() - started;
  return result;
}
