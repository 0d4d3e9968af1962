import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeStrictBase64,
  isStrictBase64,
  isWechatPayError,
  V3_SUCCESS_STATUS,
  v3FailureBody,
  v3FailureStatus,
  WECHATPAY_ERROR_CODES,
  WechatPayError,
} from "../src/index.ts";

describe("v3 replies", () => {
  it("success is 204 without a body", () => {
    expect(V3_SUCCESS_STATUS).toBe(204);
  });

  it("failure body has WeChat's shape; message cut to 64 characters (code points), code ≤ 32", () => {
    expect(v3FailureBody("签名错误")).toBe('{"code":"FAIL","message":"签名错误"}');
    const long = JSON.parse(v3FailureBody("x".repeat(100))) as { code: string; message: string };
    expect(long.message).toHaveLength(64);
    expect(long.code.length).toBeLessThanOrEqual(32);
    const emoji = JSON.parse(v3FailureBody("😀".repeat(70))) as { message: string };
    expect(Array.from(emoji.message)).toHaveLength(64);
    expect(emoji.message).toBe("😀".repeat(64));
    expect(JSON.parse(v3FailureBody("   "))).toEqual({ code: "FAIL", message: "失败" });
    expect(JSON.parse(v3FailureBody('quote " and \\ backslash'))).toEqual({
      code: "FAIL",
      message: 'quote " and \\ backslash',
    });
  });

  it("maps every error code to a 4xx/5xx status", () => {
    const expected: Record<string, number> = {
      HEADER_MISSING: 401,
      HEADER_INVALID: 401,
      SIGNATURE_PROBE: 401,
      TIMESTAMP_SKEW: 401,
      SERIAL_UNKNOWN: 401,
      PUBLIC_KEY_NOT_CONFIGURED: 401,
      SIGNATURE_INVALID: 401,
      SIGNATURE_TYPE_UNSUPPORTED: 401,
      CERTIFICATE_EXPIRED: 401,
      CERTIFICATE_NOT_YET_VALID: 401,
      V2_SIGN_INVALID: 401,
      BODY_TOO_LARGE: 400,
      ALGORITHM_UNSUPPORTED: 400,
      ENVELOPE_INVALID: 400,
      PAYLOAD_INVALID: 400,
      XML_INVALID: 400,
      XML_TOO_LARGE: 400,
      DECRYPT_FAILED: 500,
      KEY_INVALID: 500,
      BODY_NOT_RAW: 500,
      CERT_DOWNLOAD_FAILED: 500,
      VERIFIER_UNAVAILABLE: 500,
    };
    expect(Object.keys(expected).sort()).toEqual([...WECHATPAY_ERROR_CODES].sort());
    for (const code of WECHATPAY_ERROR_CODES) expect([code, v3FailureStatus(code)]).toEqual([code, expected[code]]);
  });
});

describe("WechatPayError / isWechatPayError", () => {
  it("carries name, code, message and cause", () => {
    const cause = new Error("inner");
    const e = new WechatPayError("DECRYPT_FAILED", "outer", { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe("WechatPayError");
    expect(e.code).toBe("DECRYPT_FAILED");
    expect(e.message).toBe("outer");
    expect(e.cause).toBe(cause);
    expect(isWechatPayError(e)).toBe(true);
  });

  it("recognises an error from a duplicate copy of the module (structural, not instanceof)", () => {
    class OtherCopy extends Error {
      override readonly name = "WechatPayError";
      readonly code = "SIGNATURE_INVALID";
    }
    const foreign = new OtherCopy("x");
    expect(foreign instanceof WechatPayError).toBe(false);
    expect(isWechatPayError(foreign)).toBe(true);
  });

  it("rejects look-alikes", () => {
    expect(isWechatPayError(null)).toBe(false);
    expect(isWechatPayError("WechatPayError")).toBe(false);
    expect(isWechatPayError({ name: "WechatPayError", code: "SIGNATURE_INVALID" })).toBe(false);
    expect(isWechatPayError(Object.assign(new Error("x"), { name: "WechatPayError", code: "NOT_A_CODE" }))).toBe(false);
    expect(isWechatPayError(Object.assign(new Error("x"), { code: "SIGNATURE_INVALID" }))).toBe(false);
    expect(isWechatPayError(Object.assign(new Error("x"), { name: "WechatPayError", code: 5 }))).toBe(false);
  });

  it("codes are SCREAMING_SNAKE and unique", () => {
    for (const code of WECHATPAY_ERROR_CODES) expect(code).toMatch(/^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/);
    expect(new Set(WECHATPAY_ERROR_CODES).size).toBe(WECHATPAY_ERROR_CODES.length);
  });
});

describe("strict base64", () => {
  it("accepts padded and unpadded standard base64", () => {
    for (const ok of ["", "AA==", "AA", "AAA=", "AAA", "AAAA", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", "a/b+"])
      expect(isStrictBase64(ok)).toBe(true);
    expect(decodeStrictBase64("aGk=")?.toString()).toBe("hi");
  });
  it("rejects what Buffer.from would silently skip or misread", () => {
    for (const bad of ["A", "AA=", "AAAAA", "AA==AA==", "a-b_", "aGk= ", "aGk=\n", "WECHATPAY/SIGNTEST/x-", "A==="]) {
      expect([bad, isStrictBase64(bad)]).toEqual([bad, false]);
    }
    expect(decodeStrictBase64("@@@@")).toBeUndefined();
  });
  it("accepts exactly the strings of the RFC 4648 regex it replaces (property)", () => {
    const reference = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
    // Mostly alphabet and '=', some hostile characters, all lengths around the padding boundaries.
    const char = fc.oneof(
      { weight: 12, arbitrary: fc.constantFrom(..."ABYZabyz0189+/") },
      { weight: 3, arbitrary: fc.constant("=") },
      { weight: 1, arbitrary: fc.constantFrom("-", "_", " ", "\n", "é", "\u0000", "€") },
    );
    fc.assert(
      fc.property(fc.array(char, { maxLength: 14 }), (chars) => {
        const text = chars.join("");
        expect(isStrictBase64(text)).toBe(reference.test(text));
      }),
      { numRuns: 20_000 },
    );
  });
  it("a probe value can be valid base64 (letters and '/'), which is why verifyV3 checks the prefix first", () => {
    expect(isStrictBase64("WECHATPAY/SIGNTEST/x")).toBe(true);
  });
});
