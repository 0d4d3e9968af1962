import { type KeyObject, verify, X509Certificate } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  buildRequestMessage,
  CERTIFICATES_PATH,
  encryptAeadAes256Gcm,
  formatChinaTime,
  parseAuthorization,
  randomNonce,
  signV3Headers,
} from "@wpn/wechatpay";

/** A platform certificate as WeChat holds it: the PEM it hands out and the key it signs with. */
export interface PlatformCertificate {
  serial: string;
  pem: string;
  privateKey: KeyObject;
  /**
   * The `expire_time` (弃用时间) WeChat lists: by default the certificate's own notAfter; WeChat moves it forward 24 h
   * before it switches to a new certificate, and the key retires then.
   */
  expireTime?: Date;
}

/** What the fake answers to `GET /v3/certificates`, switchable mid-test. */
export type CertificatesAnswer =
  | { kind: "list"; certificates: PlatformCertificate[]; apiV3Key: string }
  | { kind: "status"; status: number }
  /** Never answers (until the fake closes). */
  | { kind: "hang" };

export interface FakeWechatApi {
  baseUrl: string;
  answer: CertificatesAnswer;
  /** Requests whose Authorization verified against the merchant's API certificate key, and those that did not. */
  readonly requests: { authorized: boolean; mchid: string; serialNo: string }[];
  close(): Promise<void>;
}

/**
 * WeChat Pay's `GET /v3/certificates` on 127.0.0.1 for the ingress's download tests: checks the request's
 * `Authorization` (WECHATPAY2-SHA256-RSA2048 over `GET\n/v3/certificates\nts\nnonce\n\n`) with the merchant's
 * public key, answers 401 when it does not verify, and otherwise the current `answer`: the certificates encrypted
 * under the APIv3 key (AAD "certificate"), signed with the first certificate's key, as WeChat does, each listed with
 * its own validity as `effective_time` and `expire_time` (or the `expireTime` a test set).
 */
export async function startFakeWechatApi(
  merchantPublicKey: KeyObject,
  answer: CertificatesAnswer,
): Promise<FakeWechatApi> {
  const fake: FakeWechatApi = { baseUrl: "", answer, requests: [], close: async () => {} };
  const server = createServer((req, res) => {
    req.resume();
    if (req.method !== "GET" || req.url !== CERTIFICATES_PATH) {
      res.writeHead(404).end();
      return;
    }
    let auth: ReturnType<typeof parseAuthorization>;
    try {
      auth = parseAuthorization(req.headers.authorization ?? "");
    } catch {
      fake.requests.push({ authorized: false, mchid: "", serialNo: "" });
      res.writeHead(401).end(JSON.stringify({ code: "SIGN_ERROR", message: "bad Authorization" }));
      return;
    }
    const message = buildRequestMessage("GET", CERTIFICATES_PATH, auth.timestamp, auth.nonce_str, "");
    const authorized = verify("sha256", Buffer.from(message), merchantPublicKey, Buffer.from(auth.signature, "base64"));
    fake.requests.push({ authorized, mchid: auth.mchid, serialNo: auth.serial_no });
    if (!authorized) {
      res.writeHead(401).end(JSON.stringify({ code: "SIGN_ERROR", message: "signature mismatch" }));
      return;
    }
    const current = fake.answer;
    if (current.kind === "hang") return;
    if (current.kind === "status") {
      res.writeHead(current.status).end(JSON.stringify({ code: "SYSTEM_ERROR", message: "fake failure" }));
      return;
    }
    const signer = current.certificates[0];
    if (signer === undefined) throw new Error("the fake needs at least one certificate to sign with");
    const body = Buffer.from(
      JSON.stringify({
        data: current.certificates.map((c) => {
          const nonce = randomNonce(12);
          return {
            serial_no: c.serial,
            effective_time: formatChinaTime(new Date(new X509Certificate(c.pem).validFrom)),
            expire_time: formatChinaTime(c.expireTime ?? new Date(new X509Certificate(c.pem).validTo)),
            encrypt_certificate: {
              algorithm: "AEAD_AES_256_GCM",
              nonce,
              associated_data: "certificate",
              ciphertext: encryptAeadAes256Gcm({
                key: Buffer.from(current.apiV3Key, "utf8"),
                nonce,
                associatedData: "certificate",
                plaintext: c.pem,
              }),
            },
          };
        }),
      }),
    );
    res.writeHead(200, signV3Headers(body, { privateKey: signer.privateKey, serial: signer.serial })).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fake;
}
