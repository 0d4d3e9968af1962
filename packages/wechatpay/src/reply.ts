import type { WechatPayErrorCode } from "./errors.ts";

/**
 * What to answer WeChat on an APIv3 notification (protocol notes §1.11). The HTTP status decides: 2xx is
 * "received" whatever the body says, 4xx/5xx makes WeChat retry (15 s … 24 h 4 min).
 */

/** Success: 204 with no body. */
export const V3_SUCCESS_STATUS = 204;
/** WeChat's limits on the failure body. */
export const V3_FAILURE_CODE = "FAIL";
export const V3_FAILURE_MESSAGE_MAX_CHARS = 64;
export const V3_FAILURE_CONTENT_TYPE = "application/json; charset=utf-8";

/**
 * `{"code":"FAIL","message":"…"}`; the message is cut to 64 characters (code points, so a Chinese or
 * emoji message is never split inside a character) and defaults to 失败 when blank.
 */
export function v3FailureBody(message: string): string {
  const chars = Array.from(message.trim() === "" ? "失败" : message);
  return JSON.stringify({ code: V3_FAILURE_CODE, message: chars.slice(0, V3_FAILURE_MESSAGE_MAX_CHARS).join("") });
}

/**
 * The HTTP status to answer for a failure, by error code:
 * - 401 for anything that means "not proven to come from WeChat" (WeChat re-sends with a fresh signature);
 * - 400 for a verified body we cannot read (retrying the same bytes will not help, but WeChat retries anyway
 *   and the merchant sees the failures in the merchant platform);
 * - 500 for our own trouble (certificate download, a failed verification thread, configuration such as a wrong
 *   APIv3 key), so WeChat retries later, once it is fixed.
 */
export function v3FailureStatus(code: WechatPayErrorCode): 400 | 401 | 500 {
  switch (code) {
    case "HEADER_MISSING":
    case "HEADER_INVALID":
    case "SIGNATURE_PROBE":
    case "TIMESTAMP_SKEW":
    case "SERIAL_UNKNOWN":
    case "PUBLIC_KEY_NOT_CONFIGURED":
    case "SIGNATURE_INVALID":
    case "SIGNATURE_TYPE_UNSUPPORTED":
    case "CERTIFICATE_EXPIRED":
    case "CERTIFICATE_NOT_YET_VALID":
    case "V2_SIGN_INVALID":
      return 401;
    case "BODY_TOO_LARGE":
    case "ALGORITHM_UNSUPPORTED":
    case "ENVELOPE_INVALID":
    case "PAYLOAD_INVALID":
    case "XML_INVALID":
    case "XML_TOO_LARGE":
      return 400;
    // A body whose signature verified but that does not decrypt means our APIv3 key is wrong: our fault.
    case "DECRYPT_FAILED":
    case "KEY_INVALID":
    case "BODY_NOT_RAW":
    case "CERT_DOWNLOAD_FAILED":
    case "VERIFIER_UNAVAILABLE":
      return 500;
  }
}
