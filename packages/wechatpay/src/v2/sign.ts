import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { isWechatPayError, WechatPayError } from "../errors.ts";

/**
 * APIv2 signatures (protocol notes §2.2): every field except `sign`, empty values dropped, names sorted
 * by byte order, `name=value` joined with `&` (raw values: no URL-encoding, no trimming), then
 * `&key=<APIv2 key>`; MD5 or HMAC-SHA256 (keyed with the same APIv2 key), upper-case hex.
 */

export type V2SignType = "MD5" | "HMAC-SHA256";
export const V2_SIGN_TYPES: readonly V2SignType[] = ["MD5", "HMAC-SHA256"];

/** Byte-order comparison of field names (`Array#sort` without a comparator compares UTF-16 units). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The text that is hashed: `a=1&b=2&key=<apiV2Key>`. Exported for diagnostics and vector tests. */
export function v2SignString(params: Record<string, string>, apiV2Key: string): string {
  const pairs = Object.keys(params)
    .filter((name) => name !== "sign" && params[name] !== undefined && params[name] !== "")
    .sort(byteOrder)
    .map((name) => `${name}=${params[name]}`);
  return `${pairs.join("&")}&key=${apiV2Key}`;
}

function requireKey(apiV2Key: string): void {
  if (typeof apiV2Key !== "string" || apiV2Key.length === 0) {
    throw new WechatPayError("KEY_INVALID", "APIv2 key must be a non-empty string");
  }
}

/** Upper-case hex signature of `params` (its `sign` field, if any, is ignored). */
export function signV2(params: Record<string, string>, apiV2Key: string, signType: V2SignType): string {
  requireKey(apiV2Key);
  const text = Buffer.from(v2SignString(params, apiV2Key), "utf8");
  switch (signType) {
    case "MD5":
      return createHash("md5").update(text).digest("hex").toUpperCase();
    case "HMAC-SHA256":
      return createHmac("sha256", apiV2Key).update(text).digest("hex").toUpperCase();
    default:
      throw new WechatPayError("V2_SIGN_INVALID", `unsupported sign type "${String(signType)}"`);
  }
}

/**
 * Checks `params.sign` and returns which algorithm matched. Both algorithms are tried whatever `sign_type`
 * says: notifications have been seen signed with MD5 although the merchant orders with HMAC-SHA256
 * (protocol notes §5.10), and either needs the secret key. Both digests are always computed and compared
 * with `timingSafeEqual`, so timing tells nothing about how close a forged sign was. Throws V2_SIGN_INVALID.
 */
export function verifyV2(params: Record<string, string>, apiV2Key: string): V2SignType {
  requireKey(apiV2Key);
  const provided = params.sign;
  if (typeof provided !== "string" || provided.trim() === "") {
    throw new WechatPayError("V2_SIGN_INVALID", "the v2 message has no sign field");
  }
  // Not trimmed: WeChat's sign is bare hex, so whitespace around it is a change to the message, refused like any
  // other (hex case is not: a lower-case sign is the same digest).
  const given = Buffer.from(provided.toUpperCase(), "utf8");
  let matched: V2SignType | undefined;
  for (const type of V2_SIGN_TYPES) {
    const expected = Buffer.from(signV2(params, apiV2Key, type), "utf8");
    // Lengths are public (32 vs 64 hex chars); only equal-length buffers can be compared in constant time.
    if (expected.length === given.length && timingSafeEqual(expected, given)) matched = type;
  }
  if (matched === undefined) {
    throw new WechatPayError(
      "V2_SIGN_INVALID",
      "v2 sign matches neither MD5 nor HMAC-SHA256 with the configured APIv2 key",
    );
  }
  return matched;
}

/**
 * `verifyV2` with the merchant's APIv2 key, then with the key before a rotation (when one is configured and the
 * first did not match): notifications signed before a rotation are still in flight, at WeChat and in the queues.
 * Throws V2_SIGN_INVALID when neither matches.
 */
export function verifyV2WithKeyOrPrevious(
  params: Record<string, string>,
  apiV2Key: string,
  previous: string | null | undefined,
): V2SignType {
  try {
    return verifyV2(params, apiV2Key);
  } catch (error) {
    if (previous === null || previous === undefined || !isWechatPayError(error) || error.code !== "V2_SIGN_INVALID") {
      throw error;
    }
    return verifyV2(params, previous);
  }
}
