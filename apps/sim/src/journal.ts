import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EnvironmentError } from "./io.ts";
import { KEY_FILES } from "./keys.ts";
import type { Api, RefundStatus } from "./notifications.ts";

/**
 * What the simulated WeChat Pay has done, one JSON object per line in `<keys folder>/journal.jsonl`.
 * pay/refund/close/load append to it; `serve` answers order and refund queries from it. A payment is
 * recorded when it happens (before its notification is delivered): for WeChat the order is paid whether or
 * not the merchant acknowledged the notification — which is exactly why merchants query orders.
 */

export interface PayEntry {
  type: "pay";
  at: string;
  api: Api;
  mchid: string;
  appid: string;
  outTradeNo: string;
  transactionId: string;
  amount: number;
  openid: string;
  successTime: string;
  notificationId: string;
}

export interface RefundEntry {
  type: "refund";
  at: string;
  api: Api;
  mchid: string;
  outTradeNo: string;
  transactionId: string;
  outRefundNo: string;
  refundId: string;
  total: number;
  refund: number;
  status: RefundStatus;
  successTime: string;
  notificationId: string;
}

export interface CloseEntry {
  type: "close";
  at: string;
  mchid: string;
  appid: string;
  outTradeNo: string;
  amount: number;
}

export type JournalEntry = PayEntry | RefundEntry | CloseEntry;

export function journalPath(keysDir: string): string {
  return join(keysDir, KEY_FILES.journal);
}

/** Appends entries in one write (O_APPEND keeps lines of concurrent writers whole). */
export function appendJournal(keysDir: string, entries: readonly JournalEntry[]): void {
  if (entries.length === 0) return;
  appendText(keysDir, `${entries.map((e) => JSON.stringify(e)).join("\n")}\n`);
}

/**
 * Opens the journal for appending and writes nothing: for `load`, which records its payments after sending them,
 * so that a journal it could not write stops it before the first delivery, not after the run with no report.
 */
export function checkJournalWritable(keysDir: string): void {
  appendText(keysDir, "");
}

function appendText(keysDir: string, text: string): void {
  const path = journalPath(keysDir);
  try {
    appendFileSync(path, text, { mode: 0o600 });
  } catch (err) {
    throw new EnvironmentError(
      `cannot write the journal ${path} (${errorCode(err)}): the keys folder must be writable (a read-only mount ` +
        "of it will not do: copy it, or make one with `wechatpay-sim keys --out DIR`)",
      { cause: err },
    );
  }
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** Reads the journal; lines that are not JSON objects of a known type are skipped. */
export function readJournal(keysDir: string): JournalEntry[] {
  const path = journalPath(keysDir);
  if (!existsSync(path)) return [];
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new EnvironmentError(`cannot read the journal ${path} (${errorCode(err)})`, { cause: err });
  }
  const entries: JournalEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const entry = JSON.parse(line) as JournalEntry;
      if (entry && (entry.type === "pay" || entry.type === "refund" || entry.type === "close")) entries.push(entry);
    } catch {
      // A torn last line (killed writer) is ignored.
    }
  }
  return entries;
}

export type TradeState = "NOTPAY" | "SUCCESS" | "CLOSED" | "REFUND";

export interface OrderState {
  outTradeNo: string;
  mchid: string;
  appid: string;
  amount: number;
  tradeState: TradeState;
  transactionId?: string;
  openid?: string;
  successTime?: string;
  closedAt?: string;
  refunds: RefundEntry[];
}

/**
 * The key of an order in `orderStates`: out_trade_no is unique only within a merchant, so another merchant's
 * order of the same number (`pay --mchid OTHER`) is another order. Every journal line has carried mchid.
 */
export function orderKey(mchid: string, outTradeNo: string): string {
  return JSON.stringify([mchid, outTradeNo]);
}

/** Folds the journal into the current state of every order WeChat (the simulator) knows, by `orderKey`. */
export function orderStates(entries: readonly JournalEntry[]): Map<string, OrderState> {
  const orders = new Map<string, OrderState>();
  for (const e of entries) {
    const key = orderKey(e.mchid, e.outTradeNo);
    const order = orders.get(key);
    if (e.type === "close") {
      if (order) {
        if (order.tradeState === "NOTPAY") order.tradeState = "CLOSED";
        order.closedAt = e.at;
      } else {
        orders.set(key, {
          outTradeNo: e.outTradeNo,
          mchid: e.mchid,
          appid: e.appid,
          amount: e.amount,
          tradeState: "CLOSED",
          closedAt: e.at,
          refunds: [],
        });
      }
    } else if (e.type === "pay") {
      const next: OrderState = {
        outTradeNo: e.outTradeNo,
        mchid: e.mchid,
        appid: e.appid,
        amount: e.amount,
        tradeState: "SUCCESS",
        transactionId: e.transactionId,
        openid: e.openid,
        successTime: e.successTime,
        refunds: order?.refunds ?? [],
      };
      if (order?.closedAt !== undefined) next.closedAt = order.closedAt;
      if (next.refunds.some((r) => r.status === "SUCCESS")) next.tradeState = "REFUND";
      orders.set(key, next);
    } else {
      const target =
        order ??
        ({
          outTradeNo: e.outTradeNo,
          mchid: e.mchid,
          appid: "",
          amount: e.total,
          tradeState: "NOTPAY",
          transactionId: e.transactionId,
          refunds: [],
        } satisfies OrderState);
      const existing = target.refunds.findIndex((r) => r.outRefundNo === e.outRefundNo);
      if (existing === -1) target.refunds.push(e);
      else target.refunds[existing] = e;
      if (e.status === "SUCCESS" && target.tradeState === "SUCCESS") target.tradeState = "REFUND";
      orders.set(key, target);
    }
  }
  return orders;
}

/** Latest state of one merchant's order, or undefined. */
export function findOrder(keysDir: string, mchid: string, outTradeNo: string): OrderState | undefined {
  return orderStates(readJournal(keysDir)).get(orderKey(mchid, outTradeNo));
}

/** Latest record of one merchant's refund (out_refund_no is unique only within a merchant), or undefined. */
export function findRefund(keysDir: string, mchid: string, outRefundNo: string): RefundEntry | undefined {
  let found: RefundEntry | undefined;
  for (const e of readJournal(keysDir))
    if (e.type === "refund" && e.mchid === mchid && e.outRefundNo === outRefundNo) found = e;
  return found;
}
