import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.ts";

describe("worker log redaction", () => {
  it("censors every merchant secret, logged at the top level or inside an object (a row, a key set)", () => {
    const lines: string[] = [];
    const logger = createLogger("info", {}, { write: (line: string) => void lines.push(line) });
    const secrets = {
      apiV3Key: "v3-current-SECRET",
      apiV3KeyPrevious: "v3-previous-SECRET",
      previousApiV3Key: "v3-previous-as-key-set-SECRET",
      apiV2Key: "v2-current-SECRET",
      apiV2KeyPrevious: "v2-previous-SECRET",
      previousApiV2Key: "v2-previous-as-key-set-SECRET",
      apiPrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n",
    };
    logger.error({ ...secrets, mchid: "1900000109" }, "top level");
    logger.error({ keys: { ...secrets, mchid: "1900000109" } }, "one level down");
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain("SECRET");
      expect(line).toContain("1900000109");
    }
    expect(JSON.parse(lines[1] ?? "{}").keys).toMatchObject({
      apiV3KeyPrevious: "[redacted]",
      apiPrivateKeyPem: "[redacted]",
    });
  });
});

describe("worker log redaction of payer ids", () => {
  // The payer's id in every form WeChat sends it: APIv3 `payer.openid` (direct merchant), `payer.sp_openid` and
  // `payer.sub_openid` (service provider), APIv2 `openid` and `sub_openid`, and PaymentFacts' `payerOpenid`.
  const transaction = {
    out_trade_no: "wpn-order-1",
    sp_mchid: "1900000109",
    payer: { openid: "oPAYER-direct", sp_openid: "oPAYER-sp", sub_openid: "oPAYER-sub" },
  };
  const v2Fields = {
    out_trade_no: "wpn-order-1",
    mch_id: "1900000109",
    openid: "oPAYER-v2",
    sub_openid: "oPAYER-v2sub",
  };

  it("never prints one, whatever its form or level (an object logged whole), and leaves the logged object as it was", () => {
    const lines: string[] = [];
    const logger = createLogger("info", {}, { write: (line: string) => void lines.push(line) });
    logger.warn({ ...v2Fields, sp_openid: "oPAYER-top-sp" }, "APIv2 fields at the top level");
    logger.warn({ fields: v2Fields }, "APIv2 fields one level down");
    logger.warn({ mchid: "1900000109", payer: transaction.payer }, "a payer");
    logger.warn({ transaction }, "a decrypted transaction");
    logger.warn({ event: { kind: "transaction", transaction } }, "a decrypted notification");
    logger.warn({ payment: { mchid: "1900000109", payerOpenid: "oPAYER-facts" } }, "payment facts");
    logger.warn({ batch: [{ event: { transaction } }] }, "a batch of notifications");
    expect(lines).toHaveLength(7);
    for (const line of lines) {
      expect(line).not.toContain("oPAYER");
      // Only the payer goes: the rest of the object still says what the line is about.
      expect(line).toContain("1900000109");
    }
    expect(JSON.parse(lines[3] ?? "{}").transaction.payer).toBe("[redacted]");
    // The caller still holds its object: censored in the line only.
    expect(transaction.payer.sub_openid).toBe("oPAYER-sub");
  });

  it("never prints one carried by an error: its own fields, an error in them, an AggregateError's, logged as `err` or alone", () => {
    const lines: string[] = [];
    const logger = createLogger("info", {}, { write: (line: string) => void lines.push(line) });
    const carrying = Object.assign(new Error("apply failed"), { openid: "oPAYER-own", mchid: "1900000109" });
    logger.error({ err: carrying }, "an error with a payer id of its own");
    logger.error(carrying);
    logger.error(
      { err: Object.assign(new Error("parse failed"), { mchid: "1900000109", transaction }) },
      "a transaction",
    );
    const inner = Object.assign(new Error("inner"), { payerOpenid: "oPAYER-inner" });
    logger.error({ err: Object.assign(new Error("outer"), { mchid: "1900000109", detail: inner }) }, "an inner error");
    logger.error({ err: new AggregateError([carrying], "1900000109: several failed") }, "an AggregateError");
    expect(lines).toHaveLength(5);
    for (const line of lines) {
      expect(line).not.toContain("oPAYER");
      expect(line).toContain("1900000109");
    }
    // The error is still logged as pino's serializer makes it: type, message and stack beside the censored field.
    expect(JSON.parse(lines[0] ?? "{}").err).toMatchObject({
      type: "Error",
      message: "apply failed",
      openid: "[redacted]",
    });
    expect(JSON.parse(lines[0] ?? "{}").err.stack).toContain("apply failed");
    expect(carrying.openid).toBe("oPAYER-own");
  });

  it("never prints one carried by an error logged under another key or inside an object, which pino does not serialize", () => {
    const lines: string[] = [];
    const logger = createLogger("info", {}, { write: (line: string) => void lines.push(line) });
    const carrying = Object.assign(new Error("decrypt failed"), { mchid: "1900000109", transaction });
    const owning = Object.assign(new Error("apply failed"), { mchid: "1900000109", openid: "oPAYER-own" });
    logger.warn({ cause: carrying }, "an error as `cause`");
    logger.warn({ error: owning }, "an error as `error`");
    logger.warn({ failure: owning }, "an error under a name of its own");
    logger.warn({ failures: [owning] }, "errors in an array");
    logger.warn({ job: { mchid: "1900000109", last: carrying } }, "an error inside an object");
    logger.warn({ err: Object.assign(new Error("outer"), { detail: { inner: owning } }) }, "inside a logged error");
    expect(lines).toHaveLength(6);
    for (const line of lines) {
      expect(line).not.toContain("oPAYER");
      expect(line).toContain("1900000109");
    }
    // Written as JSON.stringify writes an error: its enumerable own fields, no message or stack.
    expect(JSON.parse(lines[0] ?? "{}").cause).toEqual({
      mchid: "1900000109",
      transaction: { out_trade_no: "wpn-order-1", sp_mchid: "1900000109", payer: "[redacted]" },
    });
    expect(JSON.parse(lines[1] ?? "{}").error).toEqual({ mchid: "1900000109", openid: "[redacted]" });
    expect(JSON.parse(lines[5] ?? "{}").err).toMatchObject({
      message: "outer",
      detail: { inner: { openid: "[redacted]" } },
    });
    expect(carrying.transaction.payer.openid).toBe("oPAYER-direct");
    expect(owning.openid).toBe("oPAYER-own");
  });
});
