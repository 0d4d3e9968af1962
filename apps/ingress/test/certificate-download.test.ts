import type { KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, createTestMerchant, type TestMerchant, testRsaKeyPair } from "@wpn/testing";
import { KeyStore, WechatPayError } from "@wpn/wechatpay";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.ts";
import { certificateRefresher, downloadObserver } from "../src/merchants/certificate-download.ts";
import { prismaMerchantSource } from "../src/merchants/prisma-source.ts";
import { createMetrics } from "../src/metrics.ts";
import { failureMessage } from "../src/routes/failure.ts";
import { platformCertificate } from "./support/certificate.ts";
import { type FakeWechatApi, type PlatformCertificate, startFakeWechatApi } from "./support/fake-wechat-api.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

const MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD1A3F3AA5";
/** The refresher's throttle: one download per minute. */
const THROTTLE_MS = 60_000;

function newPlatformCertificate(): PlatformCertificate {
  const { privateKey } = testRsaKeyPair();
  return { ...platformCertificate(privateKey), privateKey };
}

const merchantApiKey = testRsaKeyPair();
const keyDir = mkdtempSync(join(tmpdir(), "wpn-merchant-api-"));
const merchantKeyPath = join(keyDir, "apiclient_key.pem");
writeFileSync(merchantKeyPath, merchantApiKey.privateKey.export({ type: "pkcs8", format: "pem" }));

let certA: PlatformCertificate;
let certB: PlatformCertificate;
let fake: FakeWechatApi;
let merchant: TestMerchant;
let f: IngressFixture | undefined;
/** The download throttle's clock: tests move it past the minute instead of waiting. */
let clockMs = Date.now();

beforeAll(async () => {
  certA = newPlatformCertificate();
  certB = newPlatformCertificate();
  merchant = createTestMerchant();
  fake = await startFakeWechatApi(merchantApiKey.publicKey, {
    kind: "list",
    certificates: [certA],
    apiV3Key: merchant.apiV3Key,
  });
});
afterEach(async () => {
  await f?.close();
  f = undefined;
});
afterAll(() => fake.close());

/** The ingress in certificate mode: no WeChat Pay public key, only the merchant API credentials that download. */
async function certificateModeIngress(
  label: string,
  extraEnv: Record<string, string> = {},
  logger?: ReturnType<typeof createLogger>,
): Promise<IngressFixture> {
  fake.requests.length = 0;
  clockMs = Date.now();
  const { WECHATPAY_PUBLIC_KEY_ID: _id, WECHATPAY_PUBLIC_KEY_PATH: _path, ...env } = merchant.env;
  f = await createIngressFixture({
    label,
    merchant: { ...merchant, env },
    env: {
      WECHATPAY_MERCHANT_SERIAL_NO: MERCHANT_SERIAL,
      WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: merchantKeyPath,
      WECHATPAY_API_BASE_URL: fake.baseUrl,
      ...extraEnv,
    },
    downloadClock: () => clockMs,
    ...(logger ? { logger } : {}),
    // The tests make RSA keys and certificates (openssl) in this process, which can block its event loop for over a
    // second on a busy host: no load shedding here, it is not what these tests are about.
    app: { maxEventLoopDelayMs: false },
  });
  return f;
}

function signedBy(cert: { serial: string; privateKey: KeyObject }) {
  return signedV3(merchant, { serial: cert.serial, privateKey: cert.privateKey });
}

async function downloads(fixture: IngressFixture, result: "ok" | "failed"): Promise<number> {
  const metric = await fixture.app.ingress.metrics.certificateDownloads.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe("platform certificates downloaded by the ingress (WECHATPAY_MERCHANT_SERIAL_NO)", () => {
  it("downloads at start with a signed request, then verifies notifications with the downloaded certificate", async () => {
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    const ingress = await certificateModeIngress("cert-start");
    await ingress.app.ingress.certificates?.start();
    expect(fake.requests).toEqual([{ authorized: true, mchid: merchant.mchid, serialNo: MERCHANT_SERIAL }]);
    expect(ingress.merchants.defaultMerchant.keys.describe().map((k) => k.id)).toEqual([certA.serial]);
    const ready = await ingress.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().keys).toEqual([certA.serial]);

    const n = signedBy(certA);
    const response = await post(ingress.app, "/notify/v3", n);
    expect(response.statusCode).toBe(204);
    expect(await ingress.queue.getJob(n.jobId)).toBeDefined();
    expect(fake.requests).toHaveLength(1);
    expect(await downloads(ingress, "ok")).toBe(1);
  });

  it("a notification signed with a rotated-in certificate triggers one download and is accepted", async () => {
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    const ingress = await certificateModeIngress("cert-rotation");
    await ingress.app.ingress.certificates?.start();
    // WeChat rotates: the list now has the new certificate, and notifications start to be signed with it.
    fake.answer = { kind: "list", certificates: [certA, certB], apiV3Key: merchant.apiV3Key };

    // Within the minute after the last download, an unknown serial does not download again: 401, WeChat resends.
    const early = signedBy(certB);
    const refused = await post(ingress.app, "/notify/v3", early);
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toEqual({ code: "FAIL", message: failureMessage("SERIAL_UNKNOWN") });
    expect(fake.requests).toHaveLength(1);

    clockMs += THROTTLE_MS + 1;
    // Concurrent deliveries signed with the new certificate share one download.
    const [first, second] = [signedBy(certB), signedBy(certB)];
    const answers = await Promise.all([
      post(ingress.app, "/notify/v3", first),
      post(ingress.app, "/notify/v3", second),
    ]);
    expect(answers.map((a) => a.statusCode)).toEqual([204, 204]);
    expect(fake.requests).toHaveLength(2);
    expect(await ingress.queue.getJob(first.jobId)).toBeDefined();
    // The resend of the refused one is accepted now, without another download.
    expect((await post(ingress.app, "/notify/v3", signedBy(certB))).statusCode).toBe(204);
    expect(fake.requests).toHaveLength(2);
    expect(
      ingress.merchants.defaultMerchant.keys
        .describe()
        .map((k) => k.id)
        .sort(),
    ).toEqual([certA.serial, certB.serial].sort());
  });

  it("forged serials cost at most one download a minute, and only after the key-less checks passed", async () => {
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    const ingress = await certificateModeIngress("cert-forged");
    await ingress.app.ingress.certificates?.start();
    clockMs += THROTTLE_MS + 1;
    const forger = newPlatformCertificate();

    // A stale timestamp is refused before any download.
    const stale = signedV3(merchant, {
      serial: forger.serial,
      privateKey: forger.privateKey,
      now: new Date(Date.now() - 3_600_000),
    });
    expect((await post(ingress.app, "/notify/v3", stale)).json()).toEqual({
      code: "FAIL",
      message: failureMessage("TIMESTAMP_SKEW"),
    });
    expect(fake.requests).toHaveLength(1);

    for (let i = 0; i < 5; i += 1) {
      const response = await post(ingress.app, "/notify/v3", signedBy(newPlatformCertificate()));
      expect(response.statusCode).toBe(401);
      expect(response.json().message).toBe(failureMessage("SERIAL_UNKNOWN"));
    }
    expect(fake.requests).toHaveLength(2);
    expect(await ingress.jobsEverAdded()).toBe(0);
  });

  it("a public-key id the merchant does not hold is refused without a download: certificates cannot bring one", async () => {
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    const ingress = await certificateModeIngress("cert-pubkey-serial");
    await ingress.app.ingress.certificates?.start();
    expect(fake.requests).toHaveLength(1);
    clockMs += THROTTLE_MS + 1;

    // WeChat started signing with its public key (the switch), which this certificate-mode merchant has not configured.
    for (let i = 0; i < 3; i += 1) {
      const response = await post(ingress.app, "/notify/v3", signedV3(merchant));
      expect(response.statusCode).toBe(401);
      // Its own code, telling the operator to configure the public key (before: SERIAL_UNKNOWN, as a forged serial).
      expect(response.json()).toEqual({ code: "FAIL", message: failureMessage("PUBLIC_KEY_NOT_CONFIGURED") });
    }
    expect(fake.requests).toHaveLength(1);
    // The minute's download is still there for a certificate serial: a rotated-in certificate is fetched at once.
    fake.answer = { kind: "list", certificates: [certA, certB], apiV3Key: merchant.apiV3Key };
    expect((await post(ingress.app, "/notify/v3", signedBy(certB))).statusCode).toBe(204);
    expect(fake.requests).toHaveLength(2);

    // After a failed download a public-key id is still a 401 (nothing to wait for), not a 503 asking for resends.
    fake.answer = { kind: "status", status: 500 };
    clockMs += THROTTLE_MS + 1;
    expect((await post(ingress.app, "/notify/v3", signedBy(newPlatformCertificate()))).statusCode).toBe(503);
    const afterFailure = await post(ingress.app, "/notify/v3", signedV3(merchant));
    expect(afterFailure.statusCode).toBe(401);
    expect(afterFailure.json().message).toBe(failureMessage("PUBLIC_KEY_NOT_CONFIGURED"));
    expect(fake.requests).toHaveLength(3);
    expect(await ingress.jobsEverAdded()).toBe(1);
  });

  it("a failed download answers 503 CERT_DOWNLOAD_FAILED in WeChat's format; ready stays 503 until keys arrive", async () => {
    fake.answer = { kind: "status", status: 500 };
    const ingress = await certificateModeIngress("cert-failed");
    await ingress.app.ingress.certificates?.start();
    expect(await downloads(ingress, "failed")).toBe(1);
    const notReady = await ingress.app.inject({ method: "GET", url: "/health/ready" });
    expect(notReady.statusCode).toBe(503);
    expect(notReady.json().keys).toEqual([]);

    // Within the minute after the failure: no new download, still 503 (not a 401 that reads as a forgery).
    const n = signedBy(certA);
    const throttled = await post(ingress.app, "/notify/v3", n);
    expect(throttled.statusCode).toBe(503);
    expect(throttled.json().message).toBe(failureMessage("CERT_DOWNLOAD_FAILED"));
    expect(fake.requests).toHaveLength(1);

    clockMs += THROTTLE_MS + 1;
    const response = await post(ingress.app, "/notify/v3", n);
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({ code: "FAIL", message: failureMessage("CERT_DOWNLOAD_FAILED") });
    expect(await ingress.jobsEverAdded()).toBe(0);
    expect(await downloads(ingress, "failed")).toBe(2);

    // WeChat is back; the resend, a minute later, downloads and is accepted.
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    clockMs += THROTTLE_MS + 1;
    expect((await post(ingress.app, "/notify/v3", n)).statusCode).toBe(204);
    expect((await ingress.app.inject({ method: "GET", url: "/health/ready" })).statusCode).toBe(200);
  });

  it("answers 503 within WeChat's 5 s while WeChat's API does not answer the download", async () => {
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    // The enqueue may take up to 4 s, so the download wait gets the 0.5 s left of the 4.5 s budget.
    const lines: string[] = [];
    const logger = createLogger("info", { write: (line: string) => void lines.push(line) });
    const ingress = await certificateModeIngress("cert-hang", { INGRESS_ENQUEUE_TIMEOUT_MS: "4000" }, logger);
    await ingress.app.ingress.certificates?.start();
    fake.answer = { kind: "hang" };
    clockMs += THROTTLE_MS + 1;
    const started = performance.now();
    const response = await post(ingress.app, "/notify/v3", signedBy(certB));
    const elapsedMs = performance.now() - started;
    expect(response.statusCode).toBe(503);
    expect(response.json().message).toBe(failureMessage("CERT_DOWNLOAD_FAILED"));
    expect(elapsedMs).toBeGreaterThanOrEqual(450);
    expect(elapsedMs).toBeLessThan(1_500);
    // The log says how long the answer waited, in whole milliseconds (not 96.06501000000571 ms).
    const waited = lines.map((line) => JSON.parse(line)).filter((l) => l.code === "CERT_DOWNLOAD_FAILED");
    expect(waited.map((l) => l.detail)).toEqual([
      expect.stringMatching(/^certificate download still running after \d+ ms$/),
    ]);
    // Notifications signed with known keys are not held up by the download.
    expect((await post(ingress.app, "/notify/v3", signedBy(certA))).statusCode).toBe(204);
  });

  it("an APIv3 key rotation in the README's order: restarted with the new key and the old as previous, before WeChat switches", async () => {
    const newKey = "NewApiV3Key0123456789abcdefABCDE";
    // WeChat still encrypts the list with the old key: the switch in the merchant platform has not happened yet.
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    const ingress = await certificateModeIngress("cert-apiv3-rotation", {
      WECHATPAY_APIV3_KEY: newKey,
      WECHATPAY_APIV3_KEY_PREVIOUS: merchant.apiV3Key,
    });
    await ingress.app.ingress.certificates?.start();
    expect(await downloads(ingress, "ok")).toBe(1);
    expect(ingress.merchants.defaultMerchant.keys.describe().map((k) => k.id)).toEqual([certA.serial]);
    // Its status also waits for the first Redis sample; the keys are what the rotation took away.
    expect((await ingress.app.inject({ method: "GET", url: "/health/ready" })).json().keys).toEqual([certA.serial]);
    expect((await post(ingress.app, "/notify/v3", signedBy(certA))).statusCode).toBe(204);

    // The merchant switches in WeChat, which then also rotates its certificate: the list opens with the new key.
    fake.answer = { kind: "list", certificates: [certA, certB], apiV3Key: newKey };
    clockMs += THROTTLE_MS + 1;
    expect((await post(ingress.app, "/notify/v3", signedBy(certB))).statusCode).toBe(204);
    expect(await downloads(ingress, "ok")).toBe(2);
  });

  it("refuses certificates not encrypted under the merchant's APIv3 key (a forged certificate list)", async () => {
    const forger = newPlatformCertificate();
    fake.answer = { kind: "list", certificates: [forger], apiV3Key: "F".repeat(32) };
    const ingress = await certificateModeIngress("cert-tampered");
    await ingress.app.ingress.certificates?.start();
    expect(fake.requests).toHaveLength(1);
    expect(ingress.merchants.defaultMerchant.keys.describe()).toEqual([]);
    expect(await downloads(ingress, "failed")).toBe(1);

    clockMs += THROTTLE_MS + 1;
    const response = await post(ingress.app, "/notify/v3", signedBy(forger));
    expect(response.statusCode).toBe(503);
    expect(await ingress.jobsEverAdded()).toBe(0);
  });
});

describe("a download's failure in the log", () => {
  it("names no credential of the API base URL, whatever fetch said about it", async () => {
    const lines: string[] = [];
    const logger = createLogger("debug", { write: (line: string) => void lines.push(line) });
    const withCredentials = fake.baseUrl.replace("http://", "http://proxy-user:s3cret-pw@");
    const refresher = certificateRefresher(
      {
        mchid: merchant.mchid,
        baseUrl: withCredentials,
        merchantSerialNo: MERCHANT_SERIAL,
        merchantPrivateKeyPem: merchantApiKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        apiV3Key: Buffer.from(merchant.apiV3Key),
        previousApiV3Key: undefined,
        toleranceSeconds: 300,
      },
      new KeyStore(),
      { observer: downloadObserver(logger, createMetrics()) },
    );
    const failure = await refresher.refresh().then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failure).toBeInstanceOf(WechatPayError);
    const failed = lines.map((line) => JSON.parse(line)).filter((l) => l.code === "CERT_DOWNLOAD_FAILED");
    expect(failed).toHaveLength(1);
    for (const line of lines) expect(line).not.toContain("s3cret");
    expect(JSON.stringify(failure)).not.toContain("s3cret");
    expect(failure?.message).not.toContain("s3cret");
  });
});

describe("platform certificates downloaded for a merchant of the Merchant table (apiSerialNo, apiPrivateKeyPem)", () => {
  it("downloads when the row is loaded and on an unknown serial; reloads of an unchanged row keep what it downloaded", async () => {
    const db = await createTestDatabase("ingress_cert_mm");
    const second = createTestMerchant({ mchid: "1900000333", appid: "wx0000000000000333" });
    const certC = newPlatformCertificate();
    const secondFake = await startFakeWechatApi(merchantApiKey.publicKey, {
      kind: "list",
      certificates: [certC],
      apiV3Key: second.apiV3Key,
    });
    try {
      const privateKeyPem = merchantApiKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      await db.db.prisma.merchant.create({
        data: {
          mchid: second.mchid,
          appid: second.appid,
          apiV3Key: second.apiV3Key,
          apiSerialNo: MERCHANT_SERIAL,
          apiPrivateKeyPem: privateKeyPem,
        },
      });
      // Half-configured: refused (logged), and with no other key the merchant is not served at all.
      const third = createTestMerchant({ mchid: "1900000444", appid: "wx0000000000000444" });
      await db.db.prisma.merchant.create({
        data: { mchid: third.mchid, appid: third.appid, apiV3Key: third.apiV3Key, apiSerialNo: MERCHANT_SERIAL },
      });
      clockMs = Date.now();
      f = await createIngressFixture({
        label: "cert-mm",
        source: prismaMerchantSource(db.db.prisma),
        env: { WECHATPAY_API_BASE_URL: secondFake.baseUrl },
        downloadClock: () => clockMs,
        app: { maxEventLoopDelayMs: false },
      });
      const ingress = f;
      expect(await pollUntil(() => ingress.merchants.get(second.mchid)?.keys.has(certC.serial) === true, 5_000)).toBe(
        true,
      );
      expect(secondFake.requests).toEqual([{ authorized: true, mchid: second.mchid, serialNo: MERCHANT_SERIAL }]);

      const n = signedV3(second, { serial: certC.serial, privateKey: certC.privateKey });
      expect((await post(ingress.app, `/notify/v3/${second.mchid}`, n)).statusCode).toBe(204);
      await ingress.merchants.reload();
      expect(ingress.merchants.get(second.mchid)?.keys.has(certC.serial)).toBe(true);
      expect(secondFake.requests).toHaveLength(1);

      // Rotation for this merchant: the unknown serial downloads again once the minute has passed.
      const certD = newPlatformCertificate();
      secondFake.answer = { kind: "list", certificates: [certC, certD], apiV3Key: second.apiV3Key };
      clockMs += THROTTLE_MS + 1;
      const rotated = signedV3(second, { serial: certD.serial, privateKey: certD.privateKey });
      expect((await post(ingress.app, `/notify/v3/${second.mchid}`, rotated)).statusCode).toBe(204);
      expect(secondFake.requests).toHaveLength(2);

      // The row is edited — here its APIv3 key rotated, the old one kept as apiV3KeyPrevious — while WeChat still
      // encrypts with the old key. The downloaded certificates stay (they still verify), and a download still works.
      await db.db.prisma.merchant.update({
        where: { mchid: second.mchid },
        data: { apiV3Key: "r".repeat(32), apiV3KeyPrevious: second.apiV3Key },
      });
      await ingress.merchants.reload();
      expect(ingress.merchants.get(second.mchid)?.keys.has(certC.serial)).toBe(true);
      expect(ingress.merchants.get(second.mchid)?.keys.has(certD.serial)).toBe(true);
      // The rebuilt merchant downloads when loaded: wait for that download (refresh() joins it) before WeChat's list
      // changes below, so the next unknown serial starts a download of its own.
      await ingress.merchants.get(second.mchid)?.certificateRefresher?.refresh();
      const afterEdit = signedV3(second, { serial: certC.serial, privateKey: certC.privateKey });
      expect((await post(ingress.app, `/notify/v3/${second.mchid}`, afterEdit)).statusCode).toBe(204);
      const certE = newPlatformCertificate();
      secondFake.answer = { kind: "list", certificates: [certC, certD, certE], apiV3Key: second.apiV3Key };
      clockMs += THROTTLE_MS + 1;
      const rotatedAgain = signedV3(second, { serial: certE.serial, privateKey: certE.privateKey });
      expect((await post(ingress.app, `/notify/v3/${second.mchid}`, rotatedAgain)).statusCode).toBe(204);

      // An edit that leaves the download settings unusable (here a bad private key, the WeChat Pay public key added):
      // the row's new keys are taken, and what was downloaded stays as fixed certificates.
      await db.db.prisma.merchant.update({
        where: { mchid: second.mchid },
        data: {
          apiPrivateKeyPem: "not a key",
          publicKeyId: second.publicKeyId,
          publicKeyPem: readFileSync(second.publicKeyPath, "utf8"),
        },
      });
      await ingress.merchants.reload();
      expect(ingress.merchants.get(second.mchid)?.keys.has(second.publicKeyId)).toBe(true);
      expect(ingress.merchants.get(second.mchid)?.keys.has(certE.serial)).toBe(true);
      const afterBadEdit = signedV3(second, { serial: certC.serial, privateKey: certC.privateKey });
      expect((await post(ingress.app, `/notify/v3/${second.mchid}`, afterBadEdit)).statusCode).toBe(204);

      expect(ingress.merchants.get(third.mchid)).toBeUndefined();
      const unserved = signedV3(third, { serial: certC.serial, privateKey: certC.privateKey });
      expect((await post(ingress.app, `/notify/v3/${third.mchid}`, unserved)).statusCode).toBe(404);
    } finally {
      await secondFake.close();
      await f?.close();
      f = undefined;
      await db.drop();
    }
  });

  it("certificates downloaded before an edit that stops the download stay through later edits, kept while it is unusable", async () => {
    const db = await createTestDatabase("ingress_cert_kept");
    const tenant = createTestMerchant({ mchid: "1900000777", appid: "wx0000000000000777" });
    const certC = newPlatformCertificate();
    const tenantFake = await startFakeWechatApi(merchantApiKey.publicKey, {
      kind: "list",
      certificates: [certC],
      apiV3Key: tenant.apiV3Key,
    });
    const edit = async (data: Parameters<typeof db.db.prisma.merchant.update>[0]["data"]) => {
      await db.db.prisma.merchant.update({ where: { mchid: tenant.mchid }, data });
      await ingress.merchants.reload();
    };
    /** What a certificate-signed notification of the tenant is answered now. */
    const certificateSigned = async () =>
      (
        await post(
          ingress.app,
          `/notify/v3/${tenant.mchid}`,
          signedV3(tenant, { serial: certC.serial, privateKey: certC.privateKey }),
        )
      ).statusCode;
    let ingress: IngressFixture;
    try {
      // Download credentials and an APIv2 key, no WeChat Pay public key: certC comes only from the download.
      await db.db.prisma.merchant.create({
        data: {
          mchid: tenant.mchid,
          appid: tenant.appid,
          apiV3Key: tenant.apiV3Key,
          apiV2Key: tenant.apiV2Key,
          apiSerialNo: MERCHANT_SERIAL,
          apiPrivateKeyPem: merchantApiKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        },
      });
      clockMs = Date.now();
      f = await createIngressFixture({
        label: "cert-kept",
        source: prismaMerchantSource(db.db.prisma),
        env: { WECHATPAY_API_BASE_URL: tenantFake.baseUrl },
        downloadClock: () => clockMs,
        app: { maxEventLoopDelayMs: false },
      });
      ingress = f;
      expect(await pollUntil(() => ingress.merchants.get(tenant.mchid)?.keys.has(certC.serial) === true, 5_000)).toBe(
        true,
      );

      // The private key pasted wrong: certC is served from this process's memory alone (a restarted one cannot
      // download it), so it is kept — counted like any other kept key — and a second wrong paste keeps it too.
      await edit({ apiPrivateKeyPem: "not a key" });
      expect(await certificateSigned()).toBe(204);
      expect(ingress.merchants.keptKeys).toBe(1);
      await edit({ apiPrivateKeyPem: "still not a key" });
      expect(await certificateSigned()).toBe(204);
      expect(ingress.merchants.keptKeys).toBe(1);
      // Fixed: the download owns certC again (a later list without it would remove it); nothing is kept any more.
      await edit({ apiPrivateKeyPem: merchantApiKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString() });
      expect(
        ingress.merchants
          .get(tenant.mchid)
          ?.certificateRefresher?.downloaded()
          .map((c) => c.serial),
      ).toEqual([certC.serial]);
      expect(ingress.merchants.keptKeys).toBe(0);
      expect(await certificateSigned()).toBe(204);

      // Switching to the WeChat Pay public key, the download turned off: during WeChat's switch it still signs with
      // the certificate, and any later edit of the row (here the APIv2 key rotated) must not drop it.
      await edit({
        apiSerialNo: null,
        apiPrivateKeyPem: null,
        publicKeyId: tenant.publicKeyId,
        publicKeyPem: readFileSync(tenant.publicKeyPath, "utf8"),
      });
      expect(ingress.merchants.keptKeys).toBe(0);
      expect(await certificateSigned()).toBe(204);
      await edit({ apiV2Key: "n".repeat(32), apiV2KeyPrevious: tenant.apiV2Key });
      expect(await certificateSigned()).toBe(204);
      expect(ingress.merchants.get(tenant.mchid)?.keys.has(tenant.publicKeyId)).toBe(true);
    } finally {
      await tenantFake.close();
      await f?.close();
      f = undefined;
      await db.drop();
    }
  });
});
