import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.ts";

describe("ingress log redaction", () => {
  it("drops every merchant secret, logged at the top level or inside an object (a merchant row)", () => {
    const lines: string[] = [];
    const logger = createLogger("info", { write: (line: string) => void lines.push(line) });
    const secrets = {
      apiV3Key: "v3-current-SECRET",
      apiV3KeyPrevious: "v3-previous-SECRET",
      previousApiV3Key: "v3-previous-as-download-setting-SECRET",
      apiV2Key: "v2-current-SECRET",
      apiV2KeyPrevious: "v2-previous-SECRET",
      apiPrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n",
      merchantPrivateKeyPem: "-----BEGIN PRIVATE KEY-----\nSECRET too\n-----END PRIVATE KEY-----\n",
    };
    logger.error({ ...secrets, mchid: "1900000109" }, "top level");
    logger.error({ row: { ...secrets, mchid: "1900000109" } }, "one level down");
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain("SECRET");
      expect(line).toContain("1900000109");
    }
  });
});

describe("ingress log redaction of payer ids", () => {
  it("drops every form of payer id (an APIv2 payment is clear text), at any level of the logged object", () => {
    const lines: string[] = [];
    const logger = createLogger("info", { write: (line: string) => void lines.push(line) });
    const v2Fields = { mch_id: "1900000109", openid: "oPAYER-v2", sub_openid: "oPAYER-v2sub" };
    const payer = { openid: "oPAYER-direct", sp_openid: "oPAYER-sp", sub_openid: "oPAYER-sub" };
    logger.warn({ ...v2Fields, sp_openid: "oPAYER-top-sp" }, "APIv2 fields at the top level");
    logger.warn({ fields: v2Fields }, "APIv2 fields one level down");
    logger.warn({ event: { transaction: { sp_mchid: "1900000109", payer } } }, "a decrypted notification");
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(line).not.toContain("oPAYER");
      expect(line).toContain("1900000109");
    }
  });

  it("drops one carried by an error, logged as `err`, alone, under another key or inside an object", () => {
    const lines: string[] = [];
    const logger = createLogger("info", { write: (line: string) => void lines.push(line) });
    const carrying = Object.assign(new Error("bad body"), { mch_id: "1900000109", openid: "oPAYER-v2" });
    logger.warn({ err: carrying }, "an error with a payer id of its own");
    logger.warn(carrying);
    logger.warn({ cause: carrying }, "an error under another key: pino does not serialize it");
    logger.warn({ rejected: [{ error: carrying }] }, "an error inside an array");
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(line).not.toContain("oPAYER");
      expect(line).toContain("1900000109");
    }
  });
});
