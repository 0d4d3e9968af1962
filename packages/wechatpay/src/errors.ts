/**
 * Every failure of this package is a `WechatPayError` with a stable SCREAMING_SNAKE `code`.
 * Callers (ingress, worker) branch on `code`, never on `message`: messages are for logs and may change,
 * codes are part of the package contract and stay stable across releases.
 */
export const WECHATPAY_ERROR_CODES = [
  // --- APIv3 request headers ---
  /** A required `Wechatpay-*` header is absent or blank. The message names the header. */
  "HEADER_MISSING",
  /** A header is present but unusable: non-decimal timestamp, repeated with different values, … */
  "HEADER_INVALID",
  /** `Wechatpay-Signature` starts with `WECHATPAY/SIGNTEST/`: WeChat's deliberate bad-signature probe. */
  "SIGNATURE_PROBE",
  /** `|now - Wechatpay-Timestamp|` exceeds the tolerance (default 300 s). */
  "TIMESTAMP_SKEW",
  /** `Wechatpay-Serial` names no configured public key and no known platform certificate. */
  "SERIAL_UNKNOWN",
  /** `Wechatpay-Serial` names a WeChat Pay public key (`PUB_KEY_ID_…`) and none is configured: a merchant of platform
   *  certificates that WeChat is moving to its public key. Configure that key (id and PEM). */
  "PUBLIC_KEY_NOT_CONFIGURED",
  /** RSA-SHA256 verification failed (or the signature is not base64). */
  "SIGNATURE_INVALID",
  /** `Wechatpay-Signature-Type` is not `WECHATPAY2-SHA256-RSA2048` (e.g. the SM2 variant). */
  "SIGNATURE_TYPE_UNSUPPORTED",
  /** The platform certificate named by the serial is past its `notAfter` (as WeChat lists it: its retirement), by
   *  more than CERTIFICATE_VALIDITY_TOLERANCE_MS. */
  "CERTIFICATE_EXPIRED",
  /** The platform certificate named by the serial is not valid yet (`now < notBefore` − the same tolerance). */
  "CERTIFICATE_NOT_YET_VALID",
  /** Key material is unusable: wrong PEM kind, not RSA, wrong AES key length, bad public-key id. */
  "KEY_INVALID",
  /** The body given to verification is not raw bytes (someone passed a parsed object). */
  "BODY_NOT_RAW",
  /** A body exceeds the size limit of the parser that received it. */
  "BODY_TOO_LARGE",
  /** The worker thread that checks RSA signatures (RsaVerifyPool) failed or was closed: nothing was decided
   *  about the signature. Not an authentication failure: answer so that WeChat resends. */
  "VERIFIER_UNAVAILABLE",
  // --- APIv3 body ---
  /** `resource.algorithm` is not `AEAD_AES_256_GCM`; the message names the algorithm. */
  "ALGORITHM_UNSUPPORTED",
  /** Authenticated decryption failed: wrong key, nonce or AAD, truncated or tampered ciphertext. */
  "DECRYPT_FAILED",
  /** The notification body is not the JSON envelope WeChat sends. */
  "ENVELOPE_INVALID",
  /** The decrypted resource is not JSON, or does not match the schema of its event type. */
  "PAYLOAD_INVALID",
  // --- APIv2 ---
  /** The XML is malformed, has a DOCTYPE/entity, duplicate or nested fields, or too deep nesting. */
  "XML_INVALID",
  /** The XML body is larger than the configured byte limit (default 64 KiB). */
  "XML_TOO_LARGE",
  /** The v2 `sign` is missing or matches neither MD5 nor HMAC-SHA256. */
  "V2_SIGN_INVALID",
  // --- platform certificates ---
  /** Downloading, verifying or decrypting `GET /v3/certificates` failed. `cause` holds the reason. */
  "CERT_DOWNLOAD_FAILED",
] as const;

export type WechatPayErrorCode = (typeof WECHATPAY_ERROR_CODES)[number];

const CODE_SET: ReadonlySet<string> = new Set(WECHATPAY_ERROR_CODES);

export class WechatPayError extends Error {
  override readonly name = "WechatPayError";
  readonly code: WechatPayErrorCode;

  constructor(code: WechatPayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Structural check instead of `instanceof`: with two copies of this module loaded (duplicate install,
 * vitest module isolation, a worker thread) `instanceof` fails although the error is ours.
 */
export function isWechatPayError(e: unknown): e is WechatPayError {
  if (typeof e !== "object" || e === null) return false;
  const candidate = e as { name?: unknown; code?: unknown };
  return (
    e instanceof Error &&
    candidate.name === "WechatPayError" &&
    typeof candidate.code === "string" &&
    CODE_SET.has(candidate.code)
  );
}

/** Whether `e` is a failed decryption (wrong key, or data altered): the one error a previous key can cure. */
export function isDecryptFailure(e: unknown): boolean {
  return isWechatPayError(e) && e.code === "DECRYPT_FAILED";
}

/**
 * The merchant's key did not fit: nothing decrypted (DECRYPT_FAILED) or an APIv2 sign did not match
 * (V2_SIGN_INVALID). After a key rotation, keys read afresh may fit where cached ones did not.
 */
export function isKeyMismatch(e: unknown): boolean {
  return isDecryptFailure(e) || (isWechatPayError(e) && e.code === "V2_SIGN_INVALID");
}

/**
 * `open(key)`, and when that fails to decrypt, `open(previous)`: after a key rotation, data encrypted with the old
 * key is still in flight (queued notifications, a list WeChat encrypted before it switched).
 */
export function openWithKeyOrPrevious<K, T>(open: (key: K) => T, key: K, previous: K | null | undefined): T {
  try {
    return open(key);
  } catch (error) {
    if (previous === null || previous === undefined || !isDecryptFailure(error)) throw error;
    return open(previous);
  }
}
