import http from "node:http";
import type { AddressInfo } from "node:net";
import {
  isWechatPayError,
  KeyStore,
  type NotificationEvent,
  openV2PaymentNotification,
  openV2RefundNotification,
  openV3Notification,
  readV3Headers,
  V3_SUCCESS_STATUS,
  v2Reply,
  v3FailureBody,
  v3FailureStatus,
  verifyV3,
} from "@wpn/wechatpay";
import type { SimKeys } from "../../src/keys.ts";

/**
 * A small notify endpoint for tests, built only from @wpn/wechatpay's receiving functions (readV3Headers,
 * verifyV3, openV3Notification, openV2PaymentNotification, openV2RefundNotification): the simulator's
 * output is judged by the same code the ingress uses, while the simulator itself only uses the signing
 * half. `POST /v3` and `POST /v2` (any path ending in `/v2` is APIv2, so `/notify/v3` and `/notify/v2` work too).
 */

export interface Received {
  api: "v3" | "v2";
  /** The request's path, e.g. `/v3` or `/notify/v3`. */
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  at: number;
  /** Verified and decrypted (v3). */
  event?: NotificationEvent;
  /** Verified (v2 payment) or decrypted (v2 refund) fields. */
  fields?: Record<string, string>;
  /** Why verification failed. */
  error?: { code: string; message: string };
}

export interface Answer {
  status: number;
  body?: string;
  delayMs?: number;
  /** Close the connection without answering (the client sees ECONNRESET); `status` is then ignored. */
  drop?: boolean;
}

export interface ReceiverOptions {
  keys: SimKeys;
  /** Trust the platform certificate (default true). */
  certificate?: boolean;
  /** Trust the public key (default true). */
  publicKey?: boolean;
  /**
   * Replaces the answer. Gets the verified request (or its error) and the list so far; returning undefined
   * keeps the correct answer.
   */
  answer?(received: Received, all: Received[], correct: Answer): Answer | undefined | Promise<Answer | undefined>;
}

export interface Receiver {
  v3: string;
  v2: string;
  received: Received[];
  close(): Promise<void>;
}

function correctV3(keys: KeyStore, apiV3Key: Buffer, received: Received): Answer {
  try {
    const headers = readV3Headers(received.headers as Record<string, string>);
    verifyV3(headers, received.body, { keys });
    received.event = openV3Notification(received.body, apiV3Key);
    return { status: V3_SUCCESS_STATUS };
  } catch (err) {
    if (!isWechatPayError(err)) throw err;
    received.error = { code: err.code, message: err.message };
    return { status: v3FailureStatus(err.code), body: v3FailureBody(err.message) };
  }
}

function correctV2(apiV2Key: string, received: Received): Answer {
  try {
    const text = received.body.toString("utf8");
    received.fields = text.includes("<req_info>")
      ? openV2RefundNotification(received.body, apiV2Key).refund
      : openV2PaymentNotification(received.body, apiV2Key).fields;
    return { status: 200, body: v2Reply(true) };
  } catch (err) {
    if (!isWechatPayError(err)) throw err;
    received.error = { code: err.code, message: err.message };
    return { status: 200, body: v2Reply(false, err.code) };
  }
}

export async function startReceiver(opts: ReceiverOptions): Promise<Receiver> {
  const store = new KeyStore();
  if (opts.publicKey !== false) store.addPublicKey(opts.keys.publicKeyId, opts.keys.publicKey);
  if (opts.certificate !== false) store.addCertificate(opts.keys.certificatePem);
  const apiV3Key = Buffer.from(opts.keys.apiV3Key, "utf8");
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const path = req.url ?? "/";
      const api = path.endsWith("/v2") ? "v2" : "v3";
      const entry: Received = { api, path, headers: req.headers, body: Buffer.concat(chunks), at: Date.now() };
      received.push(entry);
      const correct = api === "v3" ? correctV3(store, apiV3Key, entry) : correctV2(opts.keys.apiV2Key, entry);
      const answer = (await opts.answer?.(entry, received, correct)) ?? correct;
      if (answer.delayMs) await new Promise((r) => setTimeout(r, answer.delayMs));
      if (answer.drop) {
        req.socket.destroy();
        return;
      }
      res.writeHead(
        answer.status,
        answer.body === undefined ? {} : { "Content-Type": api === "v3" ? "application/json" : "text/xml" },
      );
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    v3: `http://127.0.0.1:${port}/v3`,
    v2: `http://127.0.0.1:${port}/v2`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
