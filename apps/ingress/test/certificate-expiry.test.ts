import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestMerchant, type TestMerchant } from "@wpn/testing";
import { CERTIFICATE_VALIDITY_TOLERANCE_MS } from "@wpn/wechatpay";
import { afterEach, describe, expect, it } from "vitest";
import type { MerchantRecord } from "../src/merchants/registry.ts";
import { failureMessage } from "../src/routes/failure.ts";
import { datedPlatformCertificate } from "./support/certificate.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

// Configured platform certificates (WECHATPAY_PLATFORM_CERT_PATHS, PlatformCertificate rows) verify only within their
// validity — WeChat stops signing with a certificate once it expired — and the ingress says well ahead when a
// merchant's last certificate runs out, so that a missed rollover does not turn silently into 401 for everything.

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

let f: IngressFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

/** X.509 keeps whole seconds. */
function seconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/** A certificate of `merchant`'s WeChat signing key valid from `fromMs` to `toMs`, relative to now. */
function certificate(merchant: TestMerchant, fromMs: number, toMs: number) {
  const now = Date.now();
  return datedPlatformCertificate(merchant.platformPrivateKey, {
    notBefore: seconds(new Date(now + fromMs)),
    notAfter: seconds(new Date(now + toMs)),
  });
}

function certificateFiles(pems: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "wpn-cert-expiry-"));
  return pems
    .map((pem, index) => {
      const path = join(dir, `cert-${index}.pem`);
      writeFileSync(path, pem);
      return path;
    })
    .join(",");
}

/** `merchant` configured without its WeChat Pay public key: platform certificates alone verify. */
function certificateOnly(merchant: TestMerchant): TestMerchant {
  const { WECHATPAY_PUBLIC_KEY_ID: _id, WECHATPAY_PUBLIC_KEY_PATH: _path, ...env } = merchant.env;
  return { ...merchant, env };
}

async function metricValue(fixture: IngressFixture, name: string): Promise<string | undefined> {
  const text = (await fixture.app.inject({ method: "GET", url: "/metrics" })).body;
  return new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1];
}

describe("configured platform certificates outside their validity", () => {
  it("refuse what they sign: 401 CERTIFICATE_EXPIRED / CERTIFICATE_NOT_YET_VALID, a minute of clock difference allowed", async () => {
    const merchant = createTestMerchant();
    const expired = certificate(merchant, -DAY_MS, -10 * MINUTE_MS);
    const justExpired = certificate(merchant, -DAY_MS, -20_000);
    const notYet = certificate(merchant, 10 * MINUTE_MS, DAY_MS);
    f = await createIngressFixture({
      label: "cert-expiry-refuse",
      merchant,
      env: { WECHATPAY_PLATFORM_CERT_PATHS: certificateFiles([expired.pem, justExpired.pem, notYet.pem]) },
    });

    const refused = await post(f.app, "/notify/v3", signedV3(merchant, { serial: expired.serial }));
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toEqual({ code: "FAIL", message: failureMessage("CERTIFICATE_EXPIRED") });
    const early = await post(f.app, "/notify/v3", signedV3(merchant, { serial: notYet.serial }));
    expect(early.statusCode).toBe(401);
    expect(early.json()).toEqual({ code: "FAIL", message: failureMessage("CERTIFICATE_NOT_YET_VALID") });
    // 20 s past its notAfter: within the clock difference allowed with WeChat.
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: justExpired.serial }))).statusCode).toBe(204);
    expect(await f.jobsEverAdded()).toBe(1);
    const text = (await f.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(text).toMatch(/^wpn_ingress_verification_failures_total\{api="v3",code="CERTIFICATE_EXPIRED"\} 1$/m);
  });
});

describe("readiness judges a certificate's validity as verification does", () => {
  it("a certificate within the minute of clock difference is a key for /health/ready, as it is for verification", async () => {
    const merchant = certificateOnly(createTestMerchant());
    // 30 s past its notAfter (30 s before its notBefore): verification still accepts what it signs, so it is ready.
    const justExpired = certificate(merchant, -DAY_MS, -30_000);
    const almostValid = certificate(merchant, 30_000, DAY_MS);
    f = await createIngressFixture({
      label: "cert-expiry-ready",
      merchant,
      env: { WECHATPAY_PLATFORM_CERT_PATHS: certificateFiles([justExpired.pem, almostValid.pem]) },
    });
    const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.json().keys).toEqual([justExpired.serial, almostValid.serial]);
    expect(ready.statusCode).toBe(200);
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: justExpired.serial }))).statusCode).toBe(204);
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: almostValid.serial }))).statusCode).toBe(204);
  });

  it("90 s past its notAfter a certificate-only merchant is not ready, and what it signs is refused", async () => {
    const merchant = certificateOnly(createTestMerchant());
    const expired = certificate(merchant, -DAY_MS, -90_000);
    f = await createIngressFixture({
      label: "cert-expiry-unready",
      merchant,
      env: { WECHATPAY_PLATFORM_CERT_PATHS: certificateFiles([expired.pem]) },
    });
    const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().keys).toEqual([]);
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: expired.serial }))).statusCode).toBe(401);
  });
});

describe("warning ahead of a certificate's expiry", () => {
  it("wpn_ingress_certificate_expiry_seconds: when the first merchant's last certificate runs out; ready names the default merchant's", async () => {
    const merchant = createTestMerchant();
    // The environment's merchant holds an old certificate and its successor: covered until the successor expires.
    const old = certificate(merchant, -DAY_MS, 10 * DAY_MS);
    const successor = certificate(merchant, -DAY_MS, 40 * DAY_MS);
    // A Merchant row whose only certificate runs out in 5 days: the deployment's first merchant to lose its keys.
    const tenant = createTestMerchant({ mchid: "1900000777" });
    const tenantCert = certificate(tenant, -DAY_MS, 5 * DAY_MS);
    const row: MerchantRecord = {
      mchid: tenant.mchid,
      appid: tenant.appid,
      apiV2Key: null,
      publicKeyId: null,
      publicKeyPem: null,
      certificates: [{ serial: tenantCert.serial, pem: tenantCert.pem }],
      download: null,
    };
    f = await createIngressFixture({
      label: "cert-expiry-warn",
      merchant,
      env: { WECHATPAY_PLATFORM_CERT_PATHS: certificateFiles([old.pem, successor.pem]) },
      source: { load: async () => [row] },
    });

    const expiry = Number(await metricValue(f, "wpn_ingress_certificate_expiry_seconds"));
    expect(Math.abs(expiry - (5 * 86_400 + CERTIFICATE_VALIDITY_TOLERANCE_MS / 1000))).toBeLessThan(60);
    const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.statusCode).toBe(200);
    const validUntil = new Date(ready.json().certificatesValidUntil).getTime();
    expect(Math.abs(validUntil - (Date.now() + 40 * DAY_MS + CERTIFICATE_VALIDITY_TOLERANCE_MS))).toBeLessThan(60_000);
  });

  it("counts the minute of clock difference verification allows: a certificate 30 s past its notAfter still has 30 s", async () => {
    const merchant = certificateOnly(createTestMerchant());
    const notAfter = seconds(new Date(Date.now() - 30_000));
    const justExpired = datedPlatformCertificate(merchant.platformPrivateKey, {
      notBefore: seconds(new Date(Date.now() - DAY_MS)),
      notAfter,
    });
    f = await createIngressFixture({
      label: "cert-expiry-tolerance",
      merchant,
      env: { WECHATPAY_PLATFORM_CERT_PATHS: certificateFiles([justExpired.pem]) },
    });
    // Verification accepts what it signs until notAfter + 60 s: the gauge and certificatesValidUntil say the same.
    expect((await post(f.app, "/notify/v3", signedV3(merchant, { serial: justExpired.serial }))).statusCode).toBe(204);
    const expiry = Number(await metricValue(f, "wpn_ingress_certificate_expiry_seconds"));
    expect(expiry).toBeGreaterThan(0);
    expect(expiry).toBeLessThanOrEqual(31);
    const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.statusCode).toBe(200);
    expect(new Date(ready.json().certificatesValidUntil).getTime()).toBe(
      notAfter.getTime() + CERTIFICATE_VALIDITY_TOLERANCE_MS,
    );
  });

  it("a deployment without platform certificates reports no expiry (+Inf, null)", async () => {
    f = await createIngressFixture({ label: "cert-expiry-none" });
    expect(await metricValue(f, "wpn_ingress_certificate_expiry_seconds")).toBe("+Inf");
    expect((await f.app.inject({ method: "GET", url: "/health/ready" })).json().certificatesValidUntil).toBeNull();
  });
});
