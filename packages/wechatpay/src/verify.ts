import { verify as cryptoVerify, type KeyObject } from "node:crypto";
import { decodeStrictBase64 } from "./base64.ts";
import { WechatPayError } from "./errors.ts";
import { V3_SIGNATURE_TYPE, type V3Headers } from "./headers.ts";
import type { AsyncKeyResolver, KeyResolver } from "./key-store.ts";
import { buildV3Message, SIGNATURE_PROBE_PREFIX } from "./message.ts";
import type { RsaVerifyPool } from "./rsa-verify-pool.ts";

export { SIGNATURE_PROBE_PREFIX };
/** Allowed clock difference between WeChat and us, in seconds (WeChat docs: at most 5 minutes). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export interface VerifyOptions {
  keys: KeyResolver;
  /** Verification time; defaults to the wall clock. Also decides certificate validity. */
  now?: Date;
  /** Seconds; reject when |now - Wechatpay-Timestamp| > toleranceSeconds (exactly 300 s passes). */
  toleranceSeconds?: number;
}

export interface AsyncVerifyOptions extends Omit<VerifyOptions, "keys"> {
  keys: AsyncKeyResolver;
}

/** Unix seconds are 10 digits until the year 2286; 12 keeps us far from float precision limits. */
const TIMESTAMP = /^[0-9]{1,12}$/;

/**
 * The checks that need no key, in the documented order: probe → timestamp → signature type.
 * Returns the verification time. Cheap checks first, so junk never costs an RSA operation.
 */
function precheck(headers: V3Headers, body: Buffer, opts: { now?: Date; toleranceSeconds?: number }): Date {
  if (!(body instanceof Uint8Array)) {
    throw new WechatPayError(
      "BODY_NOT_RAW",
      "the body must be the raw request bytes (Buffer); a parsed and re-serialised body never verifies",
    );
  }
  if (headers.signature.startsWith(SIGNATURE_PROBE_PREFIX)) {
    throw new WechatPayError(
      "SIGNATURE_PROBE",
      "signature probe (WECHATPAY/SIGNTEST/): deliberately invalid, reject it",
    );
  }
  if (!TIMESTAMP.test(headers.timestamp)) {
    throw new WechatPayError(
      "HEADER_INVALID",
      `Wechatpay-Timestamp "${headers.timestamp}" is not decimal unix seconds`,
    );
  }
  const tolerance = opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (!Number.isFinite(tolerance) || tolerance < 0) {
    throw new RangeError(`toleranceSeconds must be a finite number >= 0, got ${tolerance}`);
  }
  const now = opts.now ?? new Date();
  // Compare in milliseconds so that 300.5 s is rejected, not rounded down to 300.
  const skewMs = Math.abs(now.getTime() - Number(headers.timestamp) * 1000);
  if (skewMs > tolerance * 1000) {
    throw new WechatPayError(
      "TIMESTAMP_SKEW",
      `Wechatpay-Timestamp ${headers.timestamp} is ${Math.round(skewMs / 1000)} s from now (tolerance ${tolerance} s)`,
    );
  }
  if (headers.signatureType !== V3_SIGNATURE_TYPE) {
    throw new WechatPayError(
      "SIGNATURE_TYPE_UNSUPPORTED",
      `Wechatpay-Signature-Type "${headers.signatureType}" is not supported (only ${V3_SIGNATURE_TYPE})`,
    );
  }
  return now;
}

function decodeSignature(signature: string): Buffer {
  const bytes = decodeStrictBase64(signature);
  if (bytes === undefined || bytes.length === 0) {
    throw new WechatPayError("SIGNATURE_INVALID", "Wechatpay-Signature is not base64");
  }
  return bytes;
}

function invalid(cause?: unknown): WechatPayError {
  return new WechatPayError(
    "SIGNATURE_INVALID",
    "RSA-SHA256 signature does not match timestamp, nonce and body",
    cause === undefined ? undefined : { cause },
  );
}

/**
 * The bare primitive: RSASSA-PKCS1-v1_5/SHA-256 of `message` against a base64 `signature`. Returns false
 * (never throws) for a wrong signature, a non-base64 signature or an unusable key.
 */
export function verifyRsaSha256(message: Buffer | string, signature: string, key: KeyObject): boolean {
  const bytes = decodeStrictBase64(signature);
  if (bytes === undefined || bytes.length === 0) return false;
  return verifyRsaSha256Bytes(typeof message === "string" ? Buffer.from(message, "utf8") : message, bytes, key);
}

/** The same check with the signature as bytes: false (never throws) for a wrong signature or an unusable key. */
export function verifyRsaSha256Bytes(message: Uint8Array, signature: Uint8Array, key: KeyObject): boolean {
  try {
    return cryptoVerify("sha256", message, key, signature);
  } catch {
    return false;
  }
}

/**
 * Verifies an APIv3 notification or response: RSASSA-PKCS1-v1_5/SHA-256 over `ts\nnonce\nbody\n`.
 * `body` must be the bytes exactly as received. Throws WechatPayError; returns nothing on success.
 */
export function verifyV3(headers: V3Headers, body: Buffer, opts: VerifyOptions): void {
  const now = precheck(headers, body, opts);
  const key: KeyObject = opts.keys.resolve(headers.serial, now);
  const signature = decodeSignature(headers.signature);
  let ok: boolean;
  try {
    ok = cryptoVerify("sha256", buildV3Message(headers.timestamp, headers.nonce, body), key, signature);
  } catch (cause) {
    throw invalid(cause);
  }
  if (!ok) throw invalid();
}

/**
 * Same checks as `verifyV3`, but the RSA operation runs on the libuv thread pool (callback form of
 * `crypto.verify`), so a burst of notifications does not block the event loop. `keys.resolve` may be async
 * (e.g. `CertificateRefresher`).
 */
export async function verifyV3Async(headers: V3Headers, body: Buffer, opts: AsyncVerifyOptions): Promise<void> {
  const now = precheck(headers, body, opts);
  const key = await opts.keys.resolve(headers.serial, now);
  const signature = decodeSignature(headers.signature);
  const message = buildV3Message(headers.timestamp, headers.nonce, body);
  const ok = await new Promise<boolean>((resolve, reject) => {
    try {
      cryptoVerify("sha256", message, key, signature, (err, result) => (err ? reject(invalid(err)) : resolve(result)));
    } catch (cause) {
      // Argument errors (e.g. a non-key object) are thrown synchronously even in callback form.
      reject(invalid(cause));
    }
  });
  if (!ok) throw invalid();
}

/**
 * Same checks as `verifyV3`, with the RSA operation on an `RsaVerifyPool`'s worker thread: the event loop does
 * the cheap checks and the key lookup, the thread the ~25 µs of RSA. Rejects with `VERIFIER_UNAVAILABLE` when
 * the thread failed (the signature was not judged).
 */
export async function verifyV3InPool(
  headers: V3Headers,
  body: Buffer,
  opts: VerifyOptions & { pool: RsaVerifyPool },
): Promise<void> {
  const now = precheck(headers, body, opts);
  const key: KeyObject = opts.keys.resolve(headers.serial, now);
  const signature = decodeSignature(headers.signature);
  if (!(await opts.pool.verify(buildV3Message(headers.timestamp, headers.nonce, body), signature, key))) {
    throw invalid();
  }
}
