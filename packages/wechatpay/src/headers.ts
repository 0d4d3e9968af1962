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

const LOWER_NAMES = Object.values(V3_HEADER_NAMES).map((name) => name.toLowerCase());
const WANTED: ReadonlySet<string> = new Set(LOWER_NAMES);

/**
 * The values of the signature headers, collected in ONE pass over the record (this runs for every
 * notification; a scan per header was measurable at thousands of requests per second). Keys are matched
 * case-insensitively, so two spellings of one header land in the same list.
 */
function collect(headers: RawHeaders): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const key in headers) {
    const value = headers[key];
    if (value === undefined) continue;
    const lower = key.toLowerCase();
    if (!WANTED.has(lower)) continue;
    const list = found.get(lower);
    const values = Array.isArray(value) ? value.map(String) : [String(value)];
    if (list) list.push(...values);
    else found.set(lower, values);
  }
  return found;
}

/**
 * A header value without the optional whitespace HTTP allows around it: spaces and tabs only (RFC 9110 §5.6.3).
 * Not String#trim, which also strips a no-break space, a BOM, VT or FF: those are part of the value as received, so a
 * nonce sent as `n` + U+00A0 is checked as that nonce, and fails, instead of passing as `n`.
 */
function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && (value[start] === " " || value[start] === "\t")) start++;
  while (end > start && (value[end - 1] === " " || value[end - 1] === "\t")) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

/**
 * Returns the trimmed value of header `name`, or undefined when absent or blank. Two spellings of the same
 * header with different values, or a repeated header with different values, are HEADER_INVALID: we refuse to
 * guess which one was signed.
 */
function lookup(found: Map<string, string[]>, name: string): string | undefined {
  const values = found.get(name.toLowerCase());
  if (values === undefined) return undefined;
  const first = values[0] === undefined ? undefined : trimOws(values[0]);
  if (values.length === 1) return first === "" ? undefined : first;
  const distinct = [...new Set(values.map(trimOws))].filter((v) => v !== "");
  if (distinct.length > 1) {
    throw new WechatPayError("HEADER_INVALID", `header ${name} has ${distinct.length} different values`);
  }
  return distinct[0];
}

/**
 * The first non-blank trimmed value of an informational header (`Request-ID`): covered by no signature and used for
 * nothing but logs, so values that differ are no reason to refuse the notification — a proxy that adds its own
 * `Request-ID` beside WeChat's (proxies append) made every genuine notification HEADER_INVALID, resent for 24 h and
 * lost.
 */
function informational(found: Map<string, string[]>, name: string): string | undefined {
  for (const value of found.get(name.toLowerCase()) ?? []) {
    const trimmed = trimOws(value);
    if (trimmed !== "") return trimmed;
  }
  return undefined;
}

function required(found: Map<string, string[]>, name: string): string {
  const value = lookup(found, name);
  if (value === undefined) throw new WechatPayError("HEADER_MISSING", `header ${name} is missing or empty`);
  return value;
}

/**
 * Reads the signature headers from a plain header record (Node's `IncomingMessage#headers`, Fastify's
 * `request.headers`, `Object.fromEntries(fetchResponse.headers)`). Names are matched case-insensitively,
 * values trimmed of spaces and tabs, a blank value counts as missing (as in wechatpay-go). A signature header with two different values
 * is HEADER_INVALID; `Request-ID`, which no signature covers, keeps its first value.
 */
export function readV3Headers(headers: RawHeaders): V3Headers {
  const found = collect(headers);
  const result: V3Headers = {
    timestamp: required(found, V3_HEADER_NAMES.timestamp),
    nonce: required(found, V3_HEADER_NAMES.nonce),
    signature: required(found, V3_HEADER_NAMES.signature),
    serial: required(found, V3_HEADER_NAMES.serial),
    signatureType: lookup(found, V3_HEADER_NAMES.signatureType) ?? V3_SIGNATURE_TYPE,
  };
  const requestId = informational(found, V3_HEADER_NAMES.requestId);
  if (requestId !== undefined) result.requestId = requestId;
  return result;
}
