import { WECHATPAY_ERROR_CODES, WechatPayError } from "@wpn/wechatpay";
import { describe, expect, it } from "vitest";
import { classifyError, INGRESS_ERRORS, IngressError, type IngressErrorCode } from "../src/errors.ts";
import { failureMessage } from "../src/routes/failure.ts";

describe("ingress error registry", () => {
  it("keeps every FAIL message within WeChat's 64-character limit", () => {
    for (const code of Object.keys(INGRESS_ERRORS) as IngressErrorCode[]) {
      expect(Array.from(failureMessage(code)).length, code).toBeLessThanOrEqual(64);
    }
  });

  it("never answers a failure with 2xx", () => {
    for (const [code, { status }] of Object.entries(INGRESS_ERRORS)) {
      expect(status >= 400 && status < 600, code).toBe(true);
    }
  });

  it("maps every notification-path WechatPayError code onto the same ingress code, others onto INTERNAL", () => {
    const internal = new Set(["KEY_INVALID", "BODY_NOT_RAW", "ALGORITHM_UNSUPPORTED"]);
    for (const code of WECHATPAY_ERROR_CODES) {
      const mapped = classifyError(new WechatPayError(code, "x")).code;
      expect(mapped, code).toBe(internal.has(code) ? "INTERNAL" : code);
    }
  });

  it("maps Fastify's body and router errors and under-pressure's shedding", () => {
    const fastify = (code: string, statusCode: number) => Object.assign(new Error(code), { code, statusCode });
    expect(classifyError(fastify("FST_ERR_CTP_BODY_TOO_LARGE", 413)).status).toBe(413);
    expect(classifyError(fastify("FST_ERR_CTP_INVALID_MEDIA_TYPE", 415)).code).toBe("UNSUPPORTED_MEDIA_TYPE");
    expect(classifyError(fastify("FST_UNDER_PRESSURE", 503)).code).toBe("OVERLOADED");
    expect(classifyError(fastify("FST_ERR_BAD_URL", 400)).code).toBe("URL_INVALID");
    expect(classifyError(fastify("FST_ERR_MAX_PARAM_LENGTH", 414)).code).toBe("URL_INVALID");
    expect(classifyError(fastify("ECONNRESET", 400)).code).toBe("BODY_INVALID");
    expect(classifyError(new TypeError("boom")).code).toBe("INTERNAL");
    const own = new IngressError("QUEUE_TIMEOUT");
    expect(classifyError(own)).toBe(own);
    expect(own.status).toBe(503);
  });
});
