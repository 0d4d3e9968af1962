import { judgeV3, type Outcome, send, type Verdict } from "../deliver.ts";
import type { SimKeys } from "../keys.ts";
import {
  newOpenid,
  newOutRefundNo,
  newOutTradeNo,
  newRefundId,
  newTransactionId,
  type Payment,
  type Refund,
  type SignedRequest,
} from "../notifications.ts";

/**
 * Scenarios are scripts of deliveries, each with what a correct receiver must answer:
 * - "accept": acknowledged (APIv3: HTTP 200/204 within the time limit);
 * - "reject": an HTTP 4XX/5XX answer (so WeChat would redeliver, and nothing was processed);
 * - "either": both are defensible (recorded, not judged).
 * Every scenario also sends deliveries that must be accepted, so a receiver that rejects everything fails
 * too. Scenarios are APIv3 only: probes, timestamps, serials and certificates exist only there.
 */

export type Expectation = "accept" | "reject" | "either";

export interface StepResult {
  title: string;
  expect: Expectation;
  /** Why a correct receiver answers so. */
  why: string;
  outcome: Outcome;
  verdict: Verdict;
  passed: boolean;
  /** One line: what the target did. */
  got: string;
}

export interface ScenarioContext {
  url: URL;
  keys: SimKeys;
  mchid: string;
  appid: string;
  timeoutMs: number;
  signal: AbortSignal;
  /** Multiplies the pauses scenarios make (replay waits before re-sending). */
  timeScale: number;
  /** Copies sent at once by `storm` (default 20). */
  stormSize?: number;
  /** Called after each step (printing). */
  onStep(step: StepResult): void;
}

export interface Scenario {
  name: string;
  summary: string;
  /** What a correct receiver must do, in prose (printed before the steps). */
  expectation: string;
  run(ctx: ScenarioContext): Promise<StepResult[]>;
}

function describe(outcome: Outcome): string {
  if (outcome.kind === "answer") {
    const body = outcome.body.length > 120 ? `${outcome.body.slice(0, 120)}…` : outcome.body;
    return `HTTP ${outcome.status}${body ? ` ${body}` : ""} (${Math.round(outcome.latencyMs)} ms)`;
  }
  if (outcome.kind === "timeout") return `no answer within ${outcome.timeoutMs} ms`;
  return `${outcome.code}: ${outcome.message}`;
}

/** Judges an outcome against an expectation. */
export function check(expect: Expectation, outcome: Outcome): { verdict: Verdict; passed: boolean } {
  const verdict = judgeV3(outcome);
  if (verdict.network) return { verdict, passed: false };
  if (expect === "either") return { verdict, passed: true };
  if (expect === "accept") return { verdict, passed: verdict.acknowledged };
  const status = outcome.kind === "answer" ? outcome.status : 0;
  return { verdict, passed: status >= 400 && status <= 599 };
}

/** Sends one request, judges it, reports it. */
export async function step(
  ctx: ScenarioContext,
  title: string,
  expect: Expectation,
  why: string,
  request: SignedRequest,
): Promise<StepResult> {
  const outcome = await send(ctx.url, request, { timeoutMs: ctx.timeoutMs, signal: ctx.signal });
  const { verdict, passed } = check(expect, outcome);
  const result: StepResult = { title, expect, why, outcome, verdict, passed, got: describe(outcome) };
  ctx.onStep(result);
  return result;
}

/** Sends several requests at once (storm), judging each. */
export async function burst(
  ctx: ScenarioContext,
  titles: string[],
  expect: Expectation,
  why: string,
  requests: SignedRequest[],
): Promise<StepResult[]> {
  const outcomes = await Promise.all(
    requests.map((r) => send(ctx.url, r, { timeoutMs: ctx.timeoutMs, signal: ctx.signal })),
  );
  return outcomes.map((outcome, i) => {
    const { verdict, passed } = check(expect, outcome);
    const result: StepResult = {
      title: titles[i] ?? `request ${i + 1}`,
      expect,
      why,
      outcome,
      verdict,
      passed,
      got: describe(outcome),
    };
    ctx.onStep(result);
    return result;
  });
}

/** A fresh payment of a new order for the scenario's merchant. */
export function newPayment(ctx: ScenarioContext, amount = 100): Payment {
  return {
    mchid: ctx.mchid,
    appid: ctx.appid,
    outTradeNo: newOutTradeNo(),
    transactionId: newTransactionId(),
    amount,
    openid: newOpenid(),
    successTime: new Date(),
  };
}

export function newRefundOf(ctx: ScenarioContext, payment: Payment): Refund {
  return {
    mchid: ctx.mchid,
    appid: ctx.appid,
    outTradeNo: payment.outTradeNo,
    transactionId: payment.transactionId,
    outRefundNo: newOutRefundNo(),
    refundId: newRefundId(),
    total: payment.amount,
    refund: payment.amount,
    status: "SUCCESS",
    successTime: new Date(),
  };
}

/** Flips one character of `text` at `index` to another base64/alphanumeric character. */
export function flipChar(text: string, index: number): string {
  const c = text.charAt(index);
  const replacement = c === "A" ? "B" : c === "0" ? "1" : /[0-9]/.test(c) ? "0" : "A";
  return text.slice(0, index) + replacement + text.slice(index + 1);
}
