import { sign as cryptoSign, type KeyObject, randomBytes, randomUUID } from "node:crypto";
import { AEAD_AES_256_GCM, encryptAeadAes256Gcm } from "./aead.ts";
import { V3_SIGNATURE_TYPE } from "./headers.ts";
import { buildRequestMessage, buildV3Message, SIGNATURE_PROBE_PREFIX } from "./message.ts";

/**
 * The signing half of APIv3: what WeChat does to notifications and what a merchant does to API requests.
 * Used by the certificate download (request signing), by the simulator and by tests to mint real,
 * verifiable notifications.
 */

export { buildRequestMessage, buildV3Message };

/** RSASSA-PKCS1-v1_5 with SHA-256, base64 (standard alphabet, padded). */
export function signV3Message(message: Buffer | string, privateKey: KeyObject): string {
  const data = typeof message === "string" ? Buffer.from(message, "utf8") : message;
  return cryptoSign("sha256", data, privateKey).toString("base64");
}

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Random [A-Za-z0-9] string; rejection sampling keeps the distribution uniform. */
export function randomNonce(length = 32): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length)) {
      // 248 = 4 * 62: bytes >= 248 would favour the first 8 characters.
      if (byte < 248 && out.length < length) out += ALPHANUMERIC.charAt(byte % 62);
    }
  }
  return out;
}

/** Unix seconds as WeChat sends them in `Wechatpay-Timestamp`. */
export function unixSeconds(date: Date): string {
  return String(Math.floor(date.getTime() / 1000));
}

/** RFC 3339 in China Standard Time, the way WeChat writes `create_time`: `2021-06-24T16:37:26+08:00`. */
export function formatChinaTime(date: Date): string {
  const shifted = new Date(date.getTime() + 8 * 3600 * 1000);
  return `${shifted.toISOString().slice(0, 19)}+08:00`;
}

export interface SignedV3Notification {
  /** Wechatpay-Timestamp, -Nonce, -Signature, -Serial, -Signature-Type and Content-Type. */
  headers: Record<string, string>;
  /** The exact bytes that were signed. Send these, do not re-serialise. */
  body: Buffer;
  id: string;
}

/**
 * Builds a notification exactly as WeChat would: encrypts `resource` with AEAD_AES_256_GCM under the APIv3
 * key, writes the envelope in WeChat's field order, signs `ts\nnonce\nbody\n` with `privateKey` and names
 * `serial` (a certificate serial or `PUB_KEY_ID_…`). `probe: true` replaces the signature with a
 * `WECHATPAY/SIGNTEST/` value, like WeChat's verification probes.
 */
export function createSignedV3Notification(args: {
  id?: string;
  eventType: string;
  resourceType?: string;
  summary?: string;
  originalType: string;
  resource: object;
  apiV3Key: Buffer;
  privateKey: KeyObject;
  serial: string;
  now?: Date;
  /** Wechatpay-Nonce (32 random characters by default). */
  nonce?: string;
  /** resource.nonce, the AES-GCM IV (12 random characters by default, as WeChat uses). */
  resourceNonce?: string;
  /** resource.associated_data; WeChat uses the original type ("transaction", "refund"). */
  associatedData?: string;
  probe?: boolean;
}): SignedV3Notification {
  const now = args.now ?? new Date();
  const id = args.id ?? randomUUID();
  const resourceNonce = args.resourceNonce ?? randomNonce(12);
  const associatedData = args.associatedData ?? args.originalType;
  const ciphertext = encryptAeadAes256Gcm({
    key: args.apiV3Key,
    nonce: resourceNonce,
    associatedData,
    plaintext: JSON.stringify(args.resource),
  });
  const envelope: Record<string, unknown> = {
    id,
    create_time: formatChinaTime(now),
    resource_type: args.resourceType ?? "encrypt-resource",
    event_type: args.eventType,
  };
  if (args.summary !== undefined) envelope.summary = args.summary;
  envelope.resource = {
    original_type: args.originalType,
    algorithm: AEAD_AES_256_GCM,
    ciphertext,
    associated_data: associatedData,
    nonce: resourceNonce,
  };
  const body = Buffer.from(JSON.stringify(envelope), "utf8");
  const headers = signV3Headers(body, {
    privateKey: args.privateKey,
    serial: args.serial,
    now,
    ...(args.nonce === undefined ? {} : { nonce: args.nonce }),
    ...(args.probe === undefined ? {} : { probe: args.probe }),
  });
  return { headers, body, id };
}

/**
 * The `Wechatpay-*` headers WeChat Pay sends with `body`: a fresh timestamp and nonce and the RSA-SHA256
 * signature of `ts\nnonce\nbody\n` (or, with `probe`, a `WECHATPAY/SIGNTEST/` value). Each redelivery of a
 * notification is signed afresh this way while its body stays the same.
 */
export function signV3Headers(
  body: Buffer,
  args: { privateKey: KeyObject; serial: string; now?: Date; nonce?: string; probe?: boolean },
): Record<string, string> {
  const timestamp = unixSeconds(args.now ?? new Date());
  const nonce = args.nonce ?? randomNonce(32);
  const signature = args.probe
    ? `${SIGNATURE_PROBE_PREFIX}${randomNonce(16)}`
    : signV3Message(buildV3Message(timestamp, nonce, body), args.privateKey);
  return {
    "Content-Type": "application/json",
    "Wechatpay-Timestamp": timestamp,
    "Wechatpay-Nonce": nonce,
    "Wechatpay-Signature": signature,
    "Wechatpay-Serial": args.serial,
    "Wechatpay-Signature-Type": V3_SIGNATURE_TYPE,
  };
}
