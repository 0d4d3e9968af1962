/**
 * The byte strings that APIv3 signatures cover. Kept apart from sign.ts/verify.ts so both can use them.
 */

/** WeChat's deliberate bad-signature probes start with this (protocol notes §1.6). */
export const SIGNATURE_PROBE_PREFIX = "WECHATPAY/SIGNTEST/";

/**
 * `timestamp\nnonce\nbody\n` — the body as raw bytes, every line LF-terminated (the last one too), no CR
 * (protocol notes §1.3). Notifications and API responses both use it.
 */
export function buildV3Message(timestamp: string, nonce: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${timestamp}\n${nonce}\n`, "utf8"), body, Buffer.from("\n", "utf8")]);
}

/** `METHOD\nURL_PATH_WITH_QUERY\nTIMESTAMP\nNONCE\nBODY\n` — what a merchant signs for an API request. */
export function buildRequestMessage(
  method: string,
  urlPath: string,
  timestamp: string,
  nonce: string,
  body: string,
): Buffer {
  return Buffer.from(`${method}\n${urlPath}\n${timestamp}\n${nonce}\n${body}\n`, "utf8");
}
