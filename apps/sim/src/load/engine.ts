import { randomInt } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { setTimeout as delay } from "node:timers/promises";
import { judge, send } from "../deliver.ts";
import type { Notification } from "../notifications.ts";

/**
 * The sending half of `load`: a fixed sequence of deliveries (unique notifications plus duplicates),
 * `concurrency` in flight at most, optionally paced to `rate` per second (open loop: delivery i is due at
 * i / rate), stopped after `maxSeconds`. Each delivery is signed when it is sent; a duplicate re-sends an
 * earlier notification (same id, fresh signature), as WeChat's redeliveries do.
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
  /** Deliveries per second; undefined = as fast as the concurrency allows. */
  rate?: number;
  maxSeconds: number;
  timeoutMs: number;
  signal: AbortSignal;
  onProgress?(done: number, notAcknowledged: number): void;
}

export interface EngineResult {
  planned: number;
  sent: number;
  elapsedMs: number;
  /** Latency of every HTTP answer, ms. */
  latencies: number[];
  /** Count by HTTP status, "timeout" or the connection error code. */
  answers: Record<string, number>;
  acknowledged: number;
  notAcknowledged: number;
  networkErrors: number;
  /** Up to 5 distinct reasons deliveries were not acknowledged. */
  failureSamples: string[];
  /** Notification indexes acknowledged at least once. */
  acknowledgedIndexes: Set<number>;
  stopped?: "time" | "interrupted";
}

export async function runEngine(opts: EngineOptions): Promise<EngineResult> {
  const agentOptions = { keepAlive: true, maxSockets: opts.concurrency };
  const agent = opts.url.protocol === "https:" ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const result: EngineResult = {
    planned: opts.sequence.length,
    sent: 0,
    elapsedMs: 0,
    latencies: [],
    answers: {},
    acknowledged: 0,
    notAcknowledged: 0,
    networkErrors: 0,
    failureSamples: [],
    acknowledgedIndexes: new Set(),
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
  const started = performance.now();
  const deadline = started + opts.maxSeconds * 1000;
  let next = 0;

  const worker = async () => {
    for (;;) {
      if (opts.signal.aborted) {
        result.stopped = "interrupted";
        return;
      }
      if (performance.now() >= deadline) {
        result.stopped ??= "time";
        return;
      }
      const position = next++;
      if (position >= opts.sequence.length) return;
      if (opts.rate !== undefined) {
        const due = started + (position / opts.rate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) {
          if (due >= deadline) {
            result.stopped ??= "time";
            return;
          }
          try {
            await delay(wait, undefined, { signal: opts.signal });
          } catch {
            result.stopped = "interrupted";
            return;
          }
        }
      }
      const index = opts.sequence[position] as number;
      const n = notification(index);
      const outcome = await send(opts.url, n.sign(new Date()), {
        timeoutMs: opts.timeoutMs,
        agent,
        signal: opts.signal,
      });
      if (opts.signal.aborted) {
        result.stopped = "interrupted";
        return;
      }
      result.sent += 1;
      const key =
        outcome.kind === "answer" ? String(outcome.status) : outcome.kind === "timeout" ? "timeout" : outcome.code;
      result.answers[key] = (result.answers[key] ?? 0) + 1;
      if (outcome.kind === "answer") result.latencies.push(outcome.latencyMs);
      const verdict = judge(n.api, outcome);
      if (verdict.acknowledged) {
        result.acknowledged += 1;
        result.acknowledgedIndexes.add(index);
      } else {
        result.notAcknowledged += 1;
        if (verdict.network) result.networkErrors += 1;
        if (result.failureSamples.length < 5 && !result.failureSamples.includes(verdict.reason)) {
          result.failureSamples.push(verdict.reason);
        }
      }
      opts.onProgress?.(result.sent, result.notAcknowledged);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, Math.max(1, opts.sequence.length)) }, worker));
  } finally {
    agent.destroy();
  }
  result.elapsedMs = performance.now() - started;
  return result;
}
