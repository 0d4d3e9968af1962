import { WechatPayError } from "./errors.ts";

/** The APIv3 signature headers, trimmed. */
export interface V3Headers {
  timestamp: string;
  nonce: string;
  signature: string;
  serial: string;
  signatureType: string;
  /** `Request-ID`: WeChat's trace id. Log it; WeChat support asks for it. */
  requestId?: string;
}

export type RawHeaders = Record<string, string | string[] | undefined>;

/** The only signature type of RSA merchants. Go and Java assume it when the header is absent. */
export const V3_SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048";

export const V3_HEADER_NAMES = {
  timestamp: "Wechatpay-Timestamp",
  nonce: "Wechatpay-Nonce",
  signature: "Wechatpay-Signature",
  serial: "Wechatpay-Serial",
  signatureType: "Wechatpay-Signature-Type",
  requestId: "Request-ID",
} as const;

/**
 * Returns the trimmed value of header `name` (looked up case-insensitively), or undefined when absent or
 * blank. Two spellings of the same header with different values, or a repeated header with different
 * values, are HEADER_INVALID: we refuse to guess which one was signed.
 */
function lookup(headers: RawHeaders, name: string): string | undefined {
  const wanted = name.toLowerCase();
  const values: string[] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    if (Array.isArray(value)) values.push(...value);
    else values.push(value);
  }
  const distinct = [...new Set(values.map((v) => String(v).trim()))].filter((v) => v !== "");
  if (distinct.length > 1) {
    throw new WechatPayError("HEADER_INVALID", `header ${name} has ${distinct.length} different values`);
  }
  return distinct[0];
}

function required(headers: RawHeaders, name: string): string {
  const value = lookup(headers, name);
  if (value === undefined) throw new WechatPayError("HEADER_MISSING", `header ${name} is missing or empty`);
  return value;
}

/**
 * Reads the signature headers from a plain header record (Node's `IncomingMessage#headers`, Fastify's
 * `request.headers`, `Object.fromEntries(fetchResponse.headers)`). Names are matched case-insensitively,
 * values trimmed, a blank value counts as missing (as in wechatpay-go).
 */
export function readV3Headers(headers: RawHeaders): V3Headers {
  const result: V3Headers = {
    timestamp: required(headers, V3_HEADER_NAMES.timestamp),
    nonce: required(headers, V3_HEADER_NAMES.nonce),
    signature: required(headers, V3_HEADER_NAMES.signature),
    serial: required(headers, V3_HEADER_NAMES.serial),
    signatureType: lookup(headers, V3_HEADER_NAMES.signatureType) ?? V3_SIGNATURE_TYPE,
  };
  const requestId = lookup(headers, V3_HEADER_NAMES.requestId);
  if (requestId !== undefined) result.requestId = requestId;
  return result;
}
