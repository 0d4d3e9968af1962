import { type KeyObject, X509Certificate } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import {
  buildV3Message,
  encryptAeadAes256Gcm,
  formatChinaTime,
  randomNonce,
  signV3Message,
  unixSeconds,
} from "../../src/index.ts";

/**
 * A fake WeChat Pay API on 127.0.0.1 (port 0 = any free port) for the certificate-download tests. Each test
 * sets `respond`; every request is recorded so tests can check what we sent (Authorization, path).
 */

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface FakeResponse {
  status: number;
  headers?: Record<string, string>;
  body: Buffer | string;
}

export interface FakeWechat {
  baseUrl: string;
  requests: RecordedRequest[];
  /** Returns the response, or "hang" to never answer (timeout tests). */
  respond: (request: RecordedRequest) => FakeResponse | "hang";
  close(): Promise<void>;
}

export async function startFakeWechat(): Promise<FakeWechat> {
  const fake: FakeWechat = {
    baseUrl: "",
    requests: [],
    respond: () => ({ status: 500, body: "no handler" }),
    close: async () => {},
  };
  const server = createServer((req, res) => {
    const recorded: RecordedRequest = { method: req.method ?? "", url: req.url ?? "", headers: req.headers };
    fake.requests.push(recorded);
    req.resume();
    const answer = fake.respond(recorded);
    if (answer === "hang") return;
    res.writeHead(answer.status, answer.headers ?? {});
    res.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  fake.baseUrl = `http://127.0.0.1:${port}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fake;
}

/** A response signed the way WeChat signs API responses (Wechatpay-* headers over ts\nnonce\nbody\n). */
export function signedJson(args: {
  body: string;
  privateKey: KeyObject;
  serial: string;
  now?: Date;
  status?: number;
}): FakeResponse {
  const bytes = Buffer.from(args.body, "utf8");
  const timestamp = unixSeconds(args.now ?? new Date());
  const nonce = randomNonce(32);
  return {
    status: args.status ?? 200,
    headers: {
      "Content-Type": "application/json",
      "Wechatpay-Timestamp": timestamp,
      "Wechatpay-Nonce": nonce,
      "Wechatpay-Serial": args.serial,
      "Wechatpay-Signature": signV3Message(buildV3Message(timestamp, nonce, bytes), args.privateKey),
      "Request-ID": "08F0A1B2C3-TEST",
    },
    body: bytes,
  };
}

/**
 * One `data[]` entry of `GET /v3/certificates`, encrypted like WeChat does. `effective_time` and `expire_time` are the
 * certificate's own validity, as WeChat lists them (vector V6), unless the test moves them: WeChat moves an old
 * certificate's `expire_time` (its retirement) forward 24 h before a switch. A string is sent as it is.
 */
export function certificateEntry(args: {
  pem: string;
  serial: string;
  apiV3Key: Buffer;
  effectiveTime?: Date | string;
  expireTime?: Date | string;
  algorithm?: string;
}): Record<string, unknown> {
  const nonce = randomNonce(12);
  const x509 = new X509Certificate(args.pem);
  const time = (value: Date | string | undefined, own: string) =>
    typeof value === "string" ? value : formatChinaTime(value ?? new Date(own));
  return {
    serial_no: args.serial,
    effective_time: time(args.effectiveTime, x509.validFrom),
    expire_time: time(args.expireTime, x509.validTo),
    encrypt_certificate: {
      algorithm: args.algorithm ?? "AEAD_AES_256_GCM",
      nonce,
      associated_data: "certificate",
      ciphertext: encryptAeadAes256Gcm({
        key: args.apiV3Key,
        nonce,
        associatedData: "certificate",
        plaintext: args.pem,
      }),
    },
  };
}
