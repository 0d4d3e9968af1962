import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "@wpn/config";
import { createTestMerchant, type TestMerchant } from "@wpn/testing";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { defaultMerchantFromConfig } from "../src/merchants/registry.ts";
import { platformCertificate } from "./support/certificate.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

// The environment's merchant verifying with platform certificates alone (WECHATPAY_PLATFORM_CERT_PATHS, no WeChat Pay
// public key): how its files are read, and what it is told when WeChat starts signing with the public key instead.

let f: IngressFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

/** `merchant` configured without its WeChat Pay public key. */
function certificateOnly(merchant: TestMerchant): TestMerchant {
  const { WECHATPAY_PUBLIC_KEY_ID: _id, WECHATPAY_PUBLIC_KEY_PATH: _path, ...env } = merchant.env;
  return { ...merchant, env };
}

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "wpn-cert-only-")), "certs.pem");
  writeFileSync(path, text);
  return path;
}

describe("WECHATPAY_PLATFORM_CERT_PATHS", () => {
  it("a file holding several certificates (PEMs concatenated) verifies with each of them, as the dashboard lists them", async () => {
    const merchant = certificateOnly(createTestMerchant());
    const current = platformCertificate(merchant.platformPrivateKey);
    const successor = platformCertificate(merchant.platformPrivateKey);
    f = await createIngressFixture({
      label: "cert-only-bundle",
      merchant,
      env: { WECHATPAY_PLATFORM_CERT_PATHS: file(`${current.pem}${successor.pem}`) },
    });
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: current.serial }))).statusCode).toBe(204);
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: successor.serial }))).statusCode).toBe(204);
    const keys: string[] = (await f.app.inject({ method: "GET", url: "/health/ready" })).json().keys;
    expect(keys.sort()).toEqual([current.serial, successor.serial].sort());
  });

  it("a file with anything but certificates is refused at start, naming the file and the block", () => {
    const merchant = certificateOnly(createTestMerchant());
    const cert = platformCertificate(merchant.platformPrivateKey);
    const key = merchant.platformPrivateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const config = loadConfig({
      ...merchant.env,
      WECHATPAY_PLATFORM_CERT_PATHS: `${file(cert.pem)},${file(`${cert.pem}${key}`)}`,
    });
    expect(() => defaultMerchantFromConfig(config)).toThrow(
      'WECHATPAY_PLATFORM_CERT_PATHS file 2: PEM block 2 of 2: certificate: expected CERTIFICATE, got a "PRIVATE KEY" PEM block',
    );
  });
});

describe("a certificate-mode merchant receiving notifications signed with the WeChat Pay public key", () => {
  it("401 PUBLIC_KEY_NOT_CONFIGURED, logged with what to configure and counted — not a plain SERIAL_UNKNOWN", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const merchant = certificateOnly(createTestMerchant());
    const cert = platformCertificate(merchant.platformPrivateKey);
    f = await createIngressFixture({
      label: "cert-only-pubkey",
      merchant,
      logger,
      env: { WECHATPAY_PLATFORM_CERT_PATHS: file(cert.pem) },
    });
    // WeChat's migration to the public key: the same signing key, now named by its PUB_KEY_ID_….
    const response = await post(f.app, "/notify/v3", signedV3(merchant));
    expect(response.statusCode).toBe(401);
    expect(response.json()).toEqual({
      code: "FAIL",
      message: "PUBLIC_KEY_NOT_CONFIGURED: WeChat Pay public key not configured",
    });
    const line = lines.find((l) => l.code === "PUBLIC_KEY_NOT_CONFIGURED");
    expect(line).toMatchObject({ serial: merchant.publicKeyId });
    expect(line?.detail).toContain("set WECHATPAY_PUBLIC_KEY_ID and WECHATPAY_PUBLIC_KEY_PATH");
    const metrics = (await f.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(
      /^wpn_ingress_verification_failures_total\{api="v3",code="PUBLIC_KEY_NOT_CONFIGURED"\} 1$/m,
    );
    // Its certificate still verifies (WeChat signs with both during its switch).
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: cert.serial }))).statusCode).toBe(204);
  });
});
