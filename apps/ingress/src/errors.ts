import { isWechatPayError } from "@wpn/wechatpay";

/**
 * Every way the ingress can refuse a notification, with the HTTP status WeChat gets and a fixed message.
 * Codes are stable (logs, metrics and alerts key on them); messages go into the FAIL body WeChat records
 * (≤64 chars per WeChat's docs) and never contain request data. Any non-2xx status makes WeChat resend,
 * so the split between 4xx and 5xx is for operators: 4xx = the request is wrong, 5xx = we are.
 */
export const INGRESS_ERRORS = {
  // --- request shape (checked before any crypto) ---
  HEADER_MISSING: { status: 400, message: "a Wechatpay-* signature header is missing" },
  HEADER_INVALID: { status: 400, message: "a Wechatpay-* signature header is malformed" },
  BODY_TOO_LARGE: { status: 413, message: "request body is too large" },
  BODY_INVALID: { status: 400, message: "request body could not be read" },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: "unsupported content type" },
  URL_INVALID: { status: 400, message: "request URL is malformed" },
  // --- HTTP refused by Node before routing (client-error.ts) ---
  REQUEST_TIMEOUT: { status: 408, message: "request not complete within the time allowed" },
  HEADERS_TOO_LARGE: { status: 431, message: "request headers are too large" },
  HTTP_INVALID: { status: 400, message: "malformed HTTP request" },
  // --- authentication (APIv3) ---
  SIGNATURE_PROBE: { status: 401, message: "signature probe rejected" },
  TIMESTAMP_SKEW: { status: 401, message: "Wechatpay-Timestamp outside the accepted window" },
  SERIAL_UNKNOWN: { status: 401, message: "unknown Wechatpay-Serial" },
  /** A `PUB_KEY_ID_…` serial for a merchant holding no WeChat Pay public key: WeChat is moving it off certificates. */
  PUBLIC_KEY_NOT_CONFIGURED: { status: 401, message: "WeChat Pay public key not configured" },
  SIGNATURE_INVALID: { status: 401, message: "signature verification failed" },
  SIGNATURE_TYPE_UNSUPPORTED: { status: 401, message: "unsupported Wechatpay-Signature-Type" },
  CERTIFICATE_EXPIRED: { status: 401, message: "platform certificate expired" },
  CERTIFICATE_NOT_YET_VALID: { status: 401, message: "platform certificate not yet valid" },
  // --- authentication (APIv2) ---
  V2_SIGN_INVALID: { status: 401, message: "sign verification failed" },
  DECRYPT_FAILED: { status: 401, message: "req_info could not be decrypted" },
  // --- content, checked after authentication ---
  ENVELOPE_INVALID: { status: 400, message: "notification envelope is invalid" },
  XML_INVALID: { status: 400, message: "XML body is invalid" },
  XML_TOO_LARGE: { status: 413, message: "XML body is too large" },
  PAYLOAD_INVALID: { status: 400, message: "notification fields are missing or invalid" },
  /**
   * WeChat's return_code FAIL notification: every field but return_code and return_msg, the sign included, comes only
   * with SUCCESS (protocol notes §2.1). Unsigned by design, so no authentication failure (not counted as one); nothing
   * in it to authenticate or apply, and SUCCESS would tell WeChat it was received and checked: refused, resent.
   */
  V2_RETURN_FAIL: { status: 400, message: "return_code FAIL carries nothing to apply" },
  // --- routing ---
  MERCHANT_UNKNOWN: { status: 404, message: "unknown merchant" },
  V2_DISABLED: { status: 404, message: "APIv2 notifications are not enabled" },
  NOT_FOUND: { status: 404, message: "not found" },
  // --- our side: WeChat should resend later ---
  QUEUE_UNAVAILABLE: { status: 503, message: "queue unavailable, please resend" },
  QUEUE_TIMEOUT: { status: 503, message: "queue did not confirm in time, please resend" },
  /** Written on the primary, but not acknowledged by INGRESS_REDIS_MIN_REPLICAS replicas in time (WAIT). */
  QUEUE_NOT_REPLICATED: { status: 503, message: "queue not replicated, please resend" },
  OVERLOADED: { status: 503, message: "server overloaded, please resend" },
  VERIFIER_UNAVAILABLE: { status: 503, message: "signature not checked, please resend" },
  CERT_DOWNLOAD_FAILED: { status: 503, message: "certificate download failed, please resend" },
  /** An mchid not in memory while the merchant table cannot be read: maybe a merchant, never to be answered 404. */
  MERCHANTS_UNAVAILABLE: { status: 503, message: "merchant table unavailable, please resend" },
  SHUTTING_DOWN: { status: 503, message: "server shutting down, please resend" },
  INTERNAL: { status: 500, message: "internal error, please resend" },
} as const satisfies Record<string, { status: number; message: string }>;

export type IngressErrorCode = keyof typeof INGRESS_ERRORS;

/** Codes that mean "the sender could not be authenticated": counted in the verification-failure metric. */
export const VERIFICATION_CODES: ReadonlySet<IngressErrorCode> = new Set<IngressErrorCode>([
  "SIGNATURE_PROBE",
  "TIMESTAMP_SKEW",
  "SERIAL_UNKNOWN",
  "PUBLIC_KEY_NOT_CONFIGURED",
  "SIGNATURE_INVALID",
  "SIGNATURE_TYPE_UNSUPPORTED",
  "CERTIFICATE_EXPIRED",
  "CERTIFICATE_NOT_YET_VALID",
  "V2_SIGN_INVALID",
  "DECRYPT_FAILED",
]);

/** A refusal with a registered code. `detail` is for the log line only, never for the response. */
export class IngressError extends Error {
  override readonly name = "IngressError";
  readonly code: IngressErrorCode;
  readonly status: number;

  constructor(code: IngressErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ?? INGRESS_ERRORS[code].message, options);
    this.code = code;
    this.status = INGRESS_ERRORS[code].status;
  }
}

function isIngressCode(code: string): code is IngressErrorCode {
  return Object.hasOwn(INGRESS_ERRORS, code);
}

/** Fastify's own errors that can reach a notify route or the router's error handler, mapped onto our codes. */
const FASTIFY_CODES: Readonly<Record<string, IngressErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "BODY_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "BODY_INVALID",
  FST_ERR_CTP_EMPTY_JSON_BODY: "BODY_INVALID",
  // The router, before any route (`frameworkErrors`, routes/failure.ts): a URL it cannot decode (`%zz`), a route
  // parameter longer than its limit (maxParamLength, 100 characters; Fastify's own answer is 414).
  FST_ERR_BAD_URL: "URL_INVALID",
  FST_ERR_MAX_PARAM_LENGTH: "URL_INVALID",
  // @fastify/under-pressure: the event loop is saturated.
  FST_UNDER_PRESSURE: "OVERLOADED",
};

/**
 * Maps anything a notify route can throw onto a registered code: our own errors, `WechatPayError`s (whose
 * codes this registry mirrors), Fastify's body/content-type errors, client aborts. Anything else is INTERNAL —
 * the caller logs it with its stack, because it is a bug or an outage we did not anticipate.
 */
export function classifyError(error: unknown): IngressError {
  if (error instanceof IngressError) return error;
  if (isWechatPayError(error)) {
    const code: IngressErrorCode = isIngressCode(error.code) ? error.code : "INTERNAL";
    return new IngressError(code, error.message, { cause: error });
  }
  const fastifyCode = (error as { code?: unknown } | null)?.code;
  if (typeof fastifyCode === "string" && FASTIFY_CODES[fastifyCode] !== undefined) {
    return new IngressError(FASTIFY_CODES[fastifyCode], (error as Error).message, { cause: error });
  }
  // A client that goes away mid-body makes the body reader fail with 400 (aborted/ECONNRESET).
  const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
  if (statusCode === 400) return new IngressError("BODY_INVALID", (error as Error).message, { cause: error });
  return new IngressError("INTERNAL", error instanceof Error ? error.message : String(error), { cause: error });
}
