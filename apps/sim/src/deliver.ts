import http, { type IncomingHttpHeaders } from "node:http";
import https from "node:https";
import { setTimeout as delay } from "node:timers/promises";
import { parseV2Xml } from "@wpn/wechatpay";
import type { Api, Notification, SignedRequest } from "./notifications.ts";

/**
 * Sending a notification the way WeChat Pay does, and judging the answer the way WeChat Pay does.
 *
 * - APIv3 (protocol notes §1.11): HTTP 200 or 204 within 5 s means "received", whatever the body says;
 *   anything else (4xx/5xx, other statuses, timeout, connection failure) means "redeliver".
 * - APIv2 (§2.4): HTTP 200 whose body is exactly an `<xml>` document with return_code SUCCESS; plain
 *   "success", JSON, HTML or anything printed before `<xml>` counts as failure.
 * - Redelivery schedules (§1.12, §2.4) below; each redelivery is signed afresh but keeps the notification.
 */

/** WeChat gives the receiver 5 seconds to answer. */
export const ANSWER_TIMEOUT_MS = 5_000;
/** Largest answer body kept for the verdict; the rest is read and dropped. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** Seconds between deliveries of a v3 notification: 15 retries over 24 h 4 min. */
export const V3_RETRY_DELAYS_S: readonly number[] = [
  15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];
/** Seconds between deliveries of a v2 notification: 9 retries over about 3 h 4 min. */
export const V2_RETRY_DELAYS_S: readonly number[] = [15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600];

export function retryDelays(api: Api): readonly number[] {
  return api === "v3" ? V3_RETRY_DELAYS_S : V2_RETRY_DELAYS_S;
}

export type Outcome =
  | { kind: "answer"; status: number; headers: IncomingHttpHeaders; body: string; latencyMs: number }
  | { kind: "timeout"; timeoutMs: number; latencyMs: number }
  | { kind: "network"; code: string; message: string; latencyMs: number };

export interface Verdict {
  /** What WeChat concludes: true = received, stop redelivering. */
  acknowledged: boolean;
  /** One line: what happened and what WeChat makes of it. */
  reason: string;
  /** Acknowledged, but probably not what the receiver meant (e.g. 200 with {"code":"FAIL"}). */
  warning?: string;
  /** The failure is a connection problem, not an answer (exit code 3 rather than 1). */
  network: boolean;
}

export interface SendOptions {
  timeoutMs?: number;
  /** Reuse connections (load); by default a fresh connection per request, like WeChat. */
  agent?: http.Agent;
  signal?: AbortSignal;
}

/** POSTs one request; never throws for HTTP, timeout or network trouble (those are outcomes). */
export function send(url: URL, request: SignedRequest, opts: SendOptions = {}): Promise<Outcome> {
  const timeoutMs = opts.timeoutMs ?? ANSWER_TIMEOUT_MS;
  const started = performance.now();
  const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
  const client = url.protocol === "https:" ? https : http;
  return new Promise<Outcome>((resolve) => {
    let settled = false;
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      resolve(outcome);
    };
    const req = client.request(url, {
      method: "POST",
      headers: {
        ...request.headers,
        "Content-Length": String(request.body.length),
        "User-Agent": "Mozilla/4.0",
        Accept: "*/*",
      },
      ...(opts.agent ? { agent: opts.agent } : { agent: false }),
    });
    const timer = setTimeout(() => {
      finish({ kind: "timeout", timeoutMs, latencyMs: elapsed() });
      req.destroy();
    }, timeoutMs);
    const onAbort = () => {
      finish({ kind: "network", code: "ABORTED", message: "interrupted", latencyMs: elapsed() });
      req.destroy();
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", (err: NodeJS.ErrnoException) => {
      finish({ kind: "network", code: err.code ?? "ERROR", message: err.message, latencyMs: elapsed() });
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        if (size < MAX_ANSWER_BYTES) chunks.push(chunk);
        size += chunk.length;
      });
      res.on("error", (err: NodeJS.ErrnoException) => {
        finish({ kind: "network", code: err.code ?? "ERROR", message: err.message, latencyMs: elapsed() });
      });
      res.on("end", () => {
        const body = Buffer.concat(chunks).subarray(0, MAX_ANSWER_BYTES).toString("utf8");
        finish({ kind: "answer", status: res.statusCode ?? 0, headers: res.headers, body, latencyMs: elapsed() });
      });
    });
    req.end(request.body);
  });
}

function preview(text: string, max = 80): string {
  const oneLine = JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
  return oneLine;
}

function notAnAnswer(outcome: Exclude<Outcome, { kind: "answer" }>): Verdict {
  if (outcome.kind === "timeout") {
    return {
      acknowledged: false,
      network: false,
      reason: `no answer within ${outcome.timeoutMs / 1000} s: WeChat waits at most 5 s, then counts the delivery as failed`,
    };
  }
  return {
    acknowledged: false,
    network: true,
    reason: `connection failed (${outcome.code}: ${outcome.message}): WeChat counts an unreachable notify_url as failure`,
  };
}

/** WeChat's reading of an answer to an APIv3 notification. */
export function judgeV3(outcome: Outcome): Verdict {
  if (outcome.kind !== "answer") return notAnAnswer(outcome);
  const { status, body } = outcome;
  if (status === 200 || status === 204) {
    const verdict: Verdict = {
      acknowledged: true,
      network: false,
      reason: `HTTP ${status}: received (200/204 stop redelivery)`,
    };
    try {
      const parsed = JSON.parse(body) as { code?: unknown };
      if (parsed && typeof parsed === "object" && typeof parsed.code === "string" && parsed.code !== "SUCCESS") {
        verdict.warning =
          `the body says code "${parsed.code}", but the status decides: WeChat takes HTTP ${status} as received and ` +
          "will NOT redeliver. Answer 4XX/5XX to ask for a redelivery.";
      }
    } catch {
      // Not JSON: fine, no body is needed.
    }
    return verdict;
  }
  if (status >= 200 && status < 300) {
    return {
      acknowledged: false,
      network: false,
      reason: `HTTP ${status}: only 200 and 204 mean received; WeChat will redeliver`,
    };
  }
  if (status >= 300 && status < 400) {
    return {
      acknowledged: false,
      network: false,
      reason: `HTTP ${status}: redirects are not followed; WeChat will redeliver`,
    };
  }
  let reason = `HTTP ${status}: failure, WeChat will redeliver`;
  try {
    const parsed = JSON.parse(body) as { code?: unknown; message?: unknown };
    if (parsed && typeof parsed === "object" && typeof parsed.code === "string") {
      reason += ` (code ${parsed.code}${typeof parsed.message === "string" ? `, message ${JSON.stringify(parsed.message)}` : ""})`;
    }
  } catch {
    if (body !== "") reason += ` (body ${preview(body)})`;
  }
  return { acknowledged: false, network: false, reason };
}

/** WeChat's reading of an answer to an APIv2 notification: HTTP 200 with exactly an `<xml>` return_code SUCCESS document. */
export function judgeV2(outcome: Outcome): Verdict {
  if (outcome.kind !== "answer") return notAnAnswer(outcome);
  const { status, body } = outcome;
  const fail = (reason: string): Verdict => ({ acknowledged: false, network: false, reason });
  if (status !== 200) {
    return fail(
      `HTTP ${status}: APIv2 needs HTTP 200 with <xml><return_code>SUCCESS</return_code>…</xml>; WeChat will redeliver`,
    );
  }
  if (body === "")
    return fail("HTTP 200 with an empty body: APIv2 needs the <xml> return_code SUCCESS answer; WeChat will redeliver");
  const start = body.indexOf("<xml>");
  if (start === -1) {
    return fail(`HTTP 200 but the body is not the <xml> answer (got ${preview(body)}); WeChat will redeliver`);
  }
  if (start > 0) {
    return fail(
      `HTTP 200 but ${start} byte(s) come before <xml> (${preview(body.slice(0, start))}): anything printed before the XML ` +
        "counts as failure; WeChat will redeliver",
    );
  }
  const trimmed = body.replace(/\s+$/, "");
  if (!trimmed.endsWith("</xml>")) {
    return fail(
      `HTTP 200 but something follows </xml> or it is missing (${preview(body.slice(-40))}); WeChat will redeliver`,
    );
  }
  let fields: Record<string, string>;
  try {
    fields = parseV2Xml(trimmed);
  } catch (err) {
    return fail(`HTTP 200 but the XML does not parse (${(err as Error).message}); WeChat will redeliver`);
  }
  const code = fields.return_code;
  if (code === "SUCCESS")
    return { acknowledged: true, network: false, reason: "HTTP 200 with return_code SUCCESS: received" };
  if (code === undefined) return fail("HTTP 200 but the XML has no return_code; WeChat will redeliver");
  if (code === "FAIL") {
    return fail(
      `return_code FAIL${fields.return_msg ? ` (return_msg ${JSON.stringify(fields.return_msg)})` : ""}: WeChat will redeliver`,
    );
  }
  return fail(`return_code ${JSON.stringify(code)} is not "SUCCESS" (exact, upper case); WeChat will redeliver`);
}

export function judge(api: Api, outcome: Outcome): Verdict {
  return api === "v3" ? judgeV3(outcome) : judgeV2(outcome);
}

export interface Attempt {
  /** 1-based. */
  number: number;
  at: Date;
  request: SignedRequest;
  outcome: Outcome;
  verdict: Verdict;
}

export interface DeliveryResult {
  acknowledged: boolean;
  attempts: Attempt[];
  /** Stopped by the signal (Ctrl-C) before it was acknowledged or the schedule ran out. */
  interrupted: boolean;
}

export interface DeliverOptions {
  url: URL;
  notification: Notification;
  /** Follow WeChat's redelivery schedule until acknowledged (default true). */
  retry?: boolean;
  /** Multiplies every wait of the schedule (0.001 turns 15 s into 15 ms). Default 1. */
  timeScale?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called after each attempt. */
  onAttempt?(attempt: Attempt): void;
  /** Called before waiting for the next attempt. */
  onWait?(info: { nextAttempt: number; totalAttempts: number; scheduledSeconds: number; waitMs: number }): void;
  /** Injectable clock for signatures (tests). */
  now?: () => Date;
}

/**
 * Delivers a notification: attempt 1, then, while not acknowledged, WeChat's redelivery schedule scaled by
 * `timeScale`. Every attempt is signed anew (`notification.sign(now)`): fresh timestamp and nonce, same id.
 */
export async function deliver(opts: DeliverOptions): Promise<DeliveryResult> {
  const delays = opts.retry === false ? [] : retryDelays(opts.notification.api);
  const scale = opts.timeScale ?? 1;
  const now = opts.now ?? (() => new Date());
  const attempts: Attempt[] = [];
  const total = delays.length + 1;
  for (let i = 0; i < total; i++) {
    if (opts.signal?.aborted) return { acknowledged: false, attempts, interrupted: true };
    const at = now();
    const request = opts.notification.sign(at);
    const outcome = await send(opts.url, request, { timeoutMs: opts.timeoutMs, signal: opts.signal });
    if (opts.signal?.aborted) return { acknowledged: false, attempts, interrupted: true };
    const attempt: Attempt = { number: i + 1, at, request, outcome, verdict: judge(opts.notification.api, outcome) };
    attempts.push(attempt);
    opts.onAttempt?.(attempt);
    if (attempt.verdict.acknowledged) return { acknowledged: true, attempts, interrupted: false };
    const next = delays[i];
    if (next === undefined) break;
    const waitMs = Math.max(0, Math.round(next * 1000 * scale));
    opts.onWait?.({ nextAttempt: i + 2, totalAttempts: total, scheduledSeconds: next, waitMs });
    try {
      await delay(waitMs, undefined, { signal: opts.signal });
    } catch {
      return { acknowledged: false, attempts, interrupted: true };
    }
  }
  return { acknowledged: false, attempts, interrupted: false };
}

/** Human form of a schedule step: 15s, 3m, 1h, 6h. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.round((seconds / 60) * 10) / 10}m`;
  return `${Math.round((seconds / 3600) * 10) / 10}h`;
}

/** 0.4 ms, 12 ms, 1.2 s, 3 m 20 s */
export function formatMs(ms: number): string {
  if (ms < 10) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  const s = Math.round(ms / 1000);
  return s < 3600
    ? `${Math.floor(s / 60)} m ${s % 60} s`
    : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
}
