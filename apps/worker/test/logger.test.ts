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
