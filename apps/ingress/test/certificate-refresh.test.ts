import { type KeyObject, X509Certificate } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createTestDatabase,
  createTestMerchant,
  type TestDatabase,
  type TestMerchant,
  testRsaKeyPair,
} from "@wpn/testing";
import { type Logger, pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { prismaMerchantSource } from "../src/merchants/prisma-source.ts";
import { failureMessage } from "../src/routes/failure.ts";
import { platformCertificate } from "./support/certificate.ts";
import { type FakeWechatApi, type PlatformCertificate, startFakeWechatApi } from "./support/fake-wechat-api.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

// Every downloading merchant — the environment's and a `Merchant` row's — downloads WeChat's certificate list on a
// timer: a certificate WeChat withdraws stops being trusted, and one it publishes ahead of a rotation is fetched before
// any notification is signed with it. These tests run the timer at 100 ms instead of WECHATPAY_CERT_REFRESH_…'s hour.

const MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD1A3F3AA5";
/** The refresher's throttle: one download per minute. */
const THROTTLE_MS = 60_000;
/** The scheduled download's period and first retry in these tests, ms. */
const REFRESH = { intervalMs: 100, retryMs: 25 };
/** How long a test waits for what a few periods bring, ms (a slow host only costs time). */
const WAIT_MS = 5_000;

/** WeChat's signing key: one for every certificate here (what tells them apart is the serial), to spare RSA set-ups. */
const platformKey = testRsaKeyPair().privateKey;

function newPlatformCertificate(): PlatformCertificate {
  return { ...platformCertificate(platformKey), privateKey: platformKey };
}

const merchantApiKey = testRsaKeyPair();
const merchantApiKeyPem = merchantApiKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const keyDir = mkdtempSync(join(tmpdir(), "wpn-cert-refresh-"));
const merchantKeyPath = join(keyDir, "apiclient_key.pem");
writeFileSync(merchantKeyPath, merchantApiKeyPem);

/** The download throttle's clock: a minute passes at every reading, so the throttle never holds a download back. */
let clockMs = 0;
const downloadClock = () => {
  clockMs += THROTTLE_MS + 1;
  return clockMs;
};

let certA: PlatformCertificate;
let certB: PlatformCertificate;
let db: TestDatabase;
let fake: FakeWechatApi;
let f: IngressFixture | undefined;

beforeAll(async () => {
  certA = newPlatformCertificate();
  certB = newPlatformCertificate();
  db = await createTestDatabase("ingress_cert_refresh");
  fake = await startFakeWechatApi(merchantApiKey.publicKey, { kind: "status", status: 500 });
});
afterEach(async () => {
  await f?.close();
  f = undefined;
  // Each test's rows only: another test's merchant would download from the same fake (and fail, under its own key).
  await db.db.prisma.merchant.deleteMany();
});
afterAll(async () => {
  await fake.close();
  await db.drop();
});

/** A log that keeps every line, to count what was logged at which level. */
interface LogLine {
  level: number;
  code?: string;
  msg: string;
  [field: string]: unknown;
}

function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/** A `Merchant` row that downloads its certificates (no WeChat Pay public key: it verifies with them alone). */
async function downloadingRow(tenant: TestMerchant): Promise<void> {
  await db.db.prisma.merchant.create({
    data: {
      mchid: tenant.mchid,
      appid: tenant.appid,
      apiV3Key: tenant.apiV3Key,
      apiSerialNo: MERCHANT_SERIAL,
      apiPrivateKeyPem: merchantApiKeyPem,
    },
  });
}

async function rowIngress(label: string, logger?: Logger): Promise<IngressFixture> {
  fake.requests.length = 0;
  f = await createIngressFixture({
    label,
    source: prismaMerchantSource(db.db.prisma),
    env: { WECHATPAY_API_BASE_URL: fake.baseUrl },
    downloadClock,
    certificateRefresh: REFRESH,
    ...(logger ? { logger } : {}),
    // The tests make RSA keys (openssl) in this process, which can block its event loop on a busy host.
    app: { maxEventLoopDelayMs: false },
  });
  return f;
}

/**
 * An ingress whose environment's merchant downloads certificates (WECHATPAY_MERCHANT_SERIAL_NO and its private key),
 * with the WeChat Pay public key too unless `publicKey` is false, its certificate download started.
 */
async function envIngress(
  label: string,
  merchant: TestMerchant,
  options: { publicKey: boolean; logger?: Logger; refresh?: typeof REFRESH },
): Promise<IngressFixture> {
  const { WECHATPAY_PUBLIC_KEY_ID: _id, WECHATPAY_PUBLIC_KEY_PATH: _path, ...withoutKey } = merchant.env;
  f = await createIngressFixture({
    label,
    merchant: options.publicKey ? merchant : { ...merchant, env: withoutKey },
    env: {
      WECHATPAY_MERCHANT_SERIAL_NO: MERCHANT_SERIAL,
      WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: merchantKeyPath,
      WECHATPAY_API_BASE_URL: fake.baseUrl,
    },
    downloadClock,
    ...(options.refresh ? { certificateRefresh: options.refresh } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    app: { maxEventLoopDelayMs: false },
  });
  await f.app.ingress.certificates?.start();
  return f;
}

function signedBy(tenant: TestMerchant, cert: { serial: string; privateKey: KeyObject }) {
  return signedV3(tenant, { serial: cert.serial, privateKey: cert.privateKey });
}

async function downloads(fixture: IngressFixture, result: "ok" | "failed"): Promise<number> {
  const metric = await fixture.app.ingress.metrics.certificateDownloads.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe("scheduled certificate download of a Merchant row", () => {
  it("a certificate WeChat withdraws from its list stops being trusted without any notification", async () => {
    const tenant = createTestMerchant({ mchid: "1900000811", appid: "wx0000000000000811" });
    await downloadingRow(tenant);
    fake.answer = { kind: "list", certificates: [certA, certB], apiV3Key: tenant.apiV3Key };
    const { logger, lines } = capturingLogger();
    const ingress = await rowIngress("cert-refresh-withdrawn", logger);
    const keys = () => ingress.merchants.get(tenant.mchid)?.keys;
    expect(await pollUntil(() => keys()?.has(certB.serial) === true, WAIT_MS)).toBe(true);
    expect((await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certB))).statusCode).toBe(204);

    // WeChat withdraws certB early (a key compromise): its list no longer has it.
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: tenant.apiV3Key };
    expect(await pollUntil(() => keys()?.has(certB.serial) === false, WAIT_MS)).toBe(true);
    const refused = await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certB));
    expect(refused.statusCode).toBe(401);
    expect(refused.json().message).toBe(failureMessage("SERIAL_UNKNOWN"));
    expect((await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certA))).statusCode).toBe(204);
    // Said once, at warn, naming the certificate: the operator learns why its notifications are refused from now on.
    const withdrawn = lines.filter((l) => l.code === "CERT_WITHDRAWN");
    expect(withdrawn).toHaveLength(1);
    expect(withdrawn[0]).toMatchObject({ level: 40, mchid: tenant.mchid, withdrawn: [certB.serial] });
  });

  it("a certificate WeChat retires (expire_time moved to a time now past) is not trusted, though still listed", async () => {
    const tenant = createTestMerchant({ mchid: "1900000815", appid: "wx0000000000000815" });
    await downloadingRow(tenant);
    // Two minutes past: beyond the minute of clock tolerance. Its X.509 validity runs on for 30 days.
    const retired = () => new Date(Date.now() - 2 * 60_000);
    const certC = { ...newPlatformCertificate(), expireTime: retired() };
    fake.answer = { kind: "list", certificates: [certA, certB, certC], apiV3Key: tenant.apiV3Key };
    const { logger, lines } = capturingLogger();
    const ingress = await rowIngress("cert-refresh-retired", logger);
    const keys = () => ingress.merchants.get(tenant.mchid)?.keys;
    expect(await pollUntil(() => keys()?.has(certB.serial) === true, WAIT_MS)).toBe(true);
    // Retired before this process started: listed, never trusted.
    expect(keys()?.has(certC.serial)).toBe(false);
    const refusedC = await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certC));
    expect(refusedC.statusCode).toBe(401);
    expect(refusedC.json().message).toBe(failureMessage("SERIAL_UNKNOWN"));
    expect((await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certB))).statusCode).toBe(204);

    // WeChat's switch: certB's expire_time is moved forward, here to a time now past; WeChat still lists it.
    fake.answer = {
      kind: "list",
      certificates: [certA, { ...certB, expireTime: retired() }],
      apiV3Key: tenant.apiV3Key,
    };
    expect(await pollUntil(() => keys()?.has(certB.serial) === false, WAIT_MS)).toBe(true);
    const refused = await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certB));
    expect(refused.statusCode).toBe(401);
    expect(refused.json().message).toBe(failureMessage("SERIAL_UNKNOWN"));
    expect((await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certA))).statusCode).toBe(204);
    // A retirement WeChat announced, not a withdrawal: no warning, the retired serials on the download's info line.
    expect(lines.filter((l) => l.code === "CERT_WITHDRAWN")).toEqual([]);
    const downloaded = lines.filter((l) => l.msg === "platform certificates downloaded" && l.level === 30);
    const named = (serial: string) => downloaded.some((l) => (l.expired as string[] | undefined)?.includes(serial));
    expect([named(certC.serial), named(certB.serial)]).toEqual([true, true]);
  });

  it("a certificate configured in a PlatformCertificate row that WeChat lists as retired is refused, though kept", async () => {
    const tenant = createTestMerchant({ mchid: "1900000816", appid: "wx0000000000000816" });
    await downloadingRow(tenant);
    // The row also holds certB itself, with its X.509 dates (valid for 30 days).
    const held = new X509Certificate(certB.pem);
    await db.db.prisma.platformCertificate.create({
      data: {
        serial: certB.serial,
        mchid: tenant.mchid,
        pem: certB.pem,
        notBefore: new Date(held.validFrom),
        notAfter: new Date(held.validTo),
      },
    });
    // WeChat's switch: certB's expire_time moved forward to a time now past (beyond the minute of tolerance).
    fake.answer = {
      kind: "list",
      certificates: [certA, { ...certB, expireTime: new Date(Date.now() - 2 * 60_000) }],
      apiV3Key: tenant.apiV3Key,
    };
    const ingress = await rowIngress("cert-refresh-configured-retired");
    const keys = () => ingress.merchants.get(tenant.mchid)?.keys;
    expect(await pollUntil(() => keys()?.has(certA.serial) === true, WAIT_MS)).toBe(true);
    const refused = await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certB));
    expect(refused.statusCode).toBe(401);
    expect(refused.json().message).toBe(failureMessage("CERTIFICATE_EXPIRED"));
    expect(keys()?.has(certB.serial)).toBe(true);
    expect((await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certA))).statusCode).toBe(204);
  });

  it("a certificate WeChat publishes ahead of a rotation is fetched before a notification is signed with it", async () => {
    const tenant = createTestMerchant({ mchid: "1900000812", appid: "wx0000000000000812" });
    await downloadingRow(tenant);
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: tenant.apiV3Key };
    const ingress = await rowIngress("cert-refresh-published");
    const keys = () => ingress.merchants.get(tenant.mchid)?.keys;
    expect(await pollUntil(() => keys()?.has(certA.serial) === true, WAIT_MS)).toBe(true);

    const certC = newPlatformCertificate();
    fake.answer = { kind: "list", certificates: [certA, certC], apiV3Key: tenant.apiV3Key };
    // No notification names certC: only the timer can bring it.
    expect(await pollUntil(() => keys()?.has(certC.serial) === true, WAIT_MS)).toBe(true);
    const before = fake.requests.length;
    expect((await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certC))).statusCode).toBe(204);
    // Accepted with what the timer brought: the notification itself downloaded nothing.
    expect(fake.requests.length).toBe(before);
  });

  it("a failed scheduled download keeps the certificates held, is counted and logged, and is retried", async () => {
    const tenant = createTestMerchant({ mchid: "1900000813", appid: "wx0000000000000813" });
    await downloadingRow(tenant);
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: tenant.apiV3Key };
    const { logger, lines } = capturingLogger();
    const ingress = await rowIngress("cert-refresh-failed", logger);
    const keys = () => ingress.merchants.get(tenant.mchid)?.keys;
    expect(await pollUntil(() => keys()?.has(certA.serial) === true, WAIT_MS)).toBe(true);

    fake.answer = { kind: "status", status: 500 };
    expect(await pollUntil(async () => (await downloads(ingress, "failed")) >= 3, WAIT_MS)).toBe(true);
    expect(keys()?.has(certA.serial)).toBe(true);
    expect((await post(ingress.app, `/notify/v3/${tenant.mchid}`, signedBy(tenant, certA))).statusCode).toBe(204);
    // A merchant that verifies with downloaded certificates alone: every failure is a warning.
    const failures = lines.filter((l) => l.code === "CERT_DOWNLOAD_FAILED");
    expect(failures.length).toBeGreaterThanOrEqual(3);
    expect(failures.every((l) => l.level === 40)).toBe(true);

    // WeChat answers again: the next retry brings what it lists now.
    const certC = newPlatformCertificate();
    fake.answer = { kind: "list", certificates: [certA, certC], apiV3Key: tenant.apiV3Key };
    expect(await pollUntil(() => keys()?.has(certC.serial) === true, WAIT_MS)).toBe(true);
  });

  it("a row disabled or edited stops its merchant's timer: only the current merchant downloads", async () => {
    const tenant = createTestMerchant({ mchid: "1900000814", appid: "wx0000000000000814" });
    await downloadingRow(tenant);
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: tenant.apiV3Key };
    const ingress = await rowIngress("cert-refresh-disabled");
    const requests = () => fake.requests.filter((r) => r.mchid === tenant.mchid).length;
    expect(await pollUntil(() => requests() >= 2, WAIT_MS)).toBe(true);

    // An edit rebuilds the merchant: one timer goes on, the old merchant's stops (a leak would double the rate).
    await db.db.prisma.merchant.update({ where: { mchid: tenant.mchid }, data: { apiV2Key: tenant.apiV2Key } });
    await ingress.merchants.reload();
    await new Promise((r) => setTimeout(r, REFRESH.intervalMs));
    const afterEdit = requests();
    await new Promise((r) => setTimeout(r, 5 * REFRESH.intervalMs));
    // At most one download a period (the jitter only shortens it), and at least one in five.
    expect(requests() - afterEdit).toBeGreaterThanOrEqual(1);
    expect(requests() - afterEdit).toBeLessThanOrEqual(6);

    await db.db.prisma.merchant.update({ where: { mchid: tenant.mchid }, data: { enabled: false } });
    await ingress.merchants.reload();
    expect(ingress.merchants.get(tenant.mchid)).toBeUndefined();
    // A download already under way may still finish; after it, nothing.
    await new Promise((r) => setTimeout(r, REFRESH.intervalMs));
    const afterDisable = requests();
    await new Promise((r) => setTimeout(r, 3 * REFRESH.intervalMs));
    expect(requests()).toBe(afterDisable);
  });
});

describe("scheduled certificate download of the environment's merchant", () => {
  it("a certificate that expired and then left WeChat's list is logged as an expiry, not as a withdrawal", async () => {
    const merchant = createTestMerchant();
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    const { logger, lines } = capturingLogger();
    // The schedule's next download is an hour away: the test runs the downloads itself.
    const ingress = await envIngress("cert-refresh-expired-unlisted", merchant, { publicKey: false, logger });
    const keys = ingress.merchants.defaultMerchant.keys;
    const refresher = ingress.merchants.defaultMerchant.certificateRefresher;
    // Listed with an expire_time two seconds ahead (its X.509 validity runs on): trusted by this download…
    const expireTime = new Date(Date.now() + 2_000);
    const certE = { ...newPlatformCertificate(), expireTime };
    fake.answer = { kind: "list", certificates: [certA, certE], apiV3Key: merchant.apiV3Key };
    expect(await refresher?.refresh()).toBe(true);
    expect(keys.has(certE.serial)).toBe(true);
    // …and past it at the next download, whose list no longer has it: WeChat retired it, nobody withdrew it.
    await new Promise((r) => setTimeout(r, expireTime.getTime() - Date.now() + 100));
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    expect(await refresher?.refresh()).toBe(true);
    expect(keys.has(certE.serial)).toBe(false);
    expect(lines.filter((l) => l.code === "CERT_WITHDRAWN")).toEqual([]);
    const expired = lines.filter((l) => l.code === "CERT_EXPIRED_UNLISTED");
    expect(expired).toHaveLength(1);
    expect(expired[0]).toMatchObject({ level: 30, mchid: merchant.mchid, expired: [certE.serial] });
  });

  it("a certificate that left WeChat's list before its expiry is still a withdrawal", async () => {
    const merchant = createTestMerchant();
    const certE = { ...newPlatformCertificate(), expireTime: new Date(Date.now() + 3_600_000) };
    fake.answer = { kind: "list", certificates: [certA, certE], apiV3Key: merchant.apiV3Key };
    const { logger, lines } = capturingLogger();
    const ingress = await envIngress("cert-refresh-withdrawn-early", merchant, { publicKey: false, logger });
    expect(ingress.merchants.defaultMerchant.keys.has(certE.serial)).toBe(true);
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    expect(await ingress.merchants.defaultMerchant.certificateRefresher?.refresh()).toBe(true);
    expect(lines.filter((l) => l.code === "CERT_EXPIRED_UNLISTED")).toEqual([]);
    const withdrawn = lines.filter((l) => l.code === "CERT_WITHDRAWN");
    expect(withdrawn).toHaveLength(1);
    expect(withdrawn[0]).toMatchObject({ level: 40, mchid: merchant.mchid, withdrawn: [certE.serial] });
  });

  it("drops a withdrawn certificate and fetches a published one, as a row's merchant does", async () => {
    const merchant = createTestMerchant();
    fake.answer = { kind: "list", certificates: [certA, certB], apiV3Key: merchant.apiV3Key };
    fake.requests.length = 0;
    const ingress = await envIngress("cert-refresh-env", merchant, { publicKey: false, refresh: REFRESH });
    const keys = ingress.merchants.defaultMerchant.keys;
    expect(keys.has(certB.serial)).toBe(true);

    const certC = newPlatformCertificate();
    fake.answer = { kind: "list", certificates: [certA, certC], apiV3Key: merchant.apiV3Key };
    expect(await pollUntil(() => keys.has(certC.serial) && !keys.has(certB.serial), WAIT_MS)).toBe(true);
    expect((await post(ingress.app, "/notify/v3", signedV3(merchant, certC))).statusCode).toBe(204);
    expect((await post(ingress.app, "/notify/v3", signedV3(merchant, certB))).statusCode).toBe(401);
  });
});

describe("a merchant with a WeChat Pay public key and download settings WeChat answers with no certificate", () => {
  /**
   * The default merchant with its public key and download settings, WeChat answering 404 as it does for a merchant
   * it issues no platform certificate (public-key merchants since 2024-10); `attempts` downloads, a minute apart.
   */
  async function failedAttempts(label: string, attempts: number) {
    const merchant = createTestMerchant();
    fake.answer = { kind: "status", status: 404 };
    const { logger, lines } = capturingLogger();
    const ingress = await envIngress(label, merchant, { publicKey: true, logger });
    const refresher = ingress.merchants.defaultMerchant.certificateRefresher;
    for (let i = 1; i < attempts; i += 1) await expect(refresher?.refresh()).rejects.toThrow();
    return { ingress, merchant, failures: lines.filter((l) => l.code === "CERT_DOWNLOAD_FAILED") };
  }

  it("logs the failure once at warn, then at debug, and counts every one", async () => {
    const { ingress, merchant, failures } = await failedAttempts("cert-refresh-pubkey", 5);
    expect(failures.map((l) => l.level)).toEqual([40, 20, 20, 20, 20]);
    expect(await downloads(ingress, "failed")).toBe(5);
    // Nothing is refused for it: the public key verifies the merchant's notifications.
    expect((await post(ingress.app, "/notify/v3", signedV3(merchant))).statusCode).toBe(204);
  });

  it("a merchant without a public key warns at every failure: its notifications depend on the download", async () => {
    const merchant = createTestMerchant();
    fake.answer = { kind: "status", status: 404 };
    const { logger, lines } = capturingLogger();
    const ingress = await envIngress("cert-refresh-nokey", merchant, { publicKey: false, logger });
    const refresher = ingress.merchants.defaultMerchant.certificateRefresher;
    for (let i = 1; i < 3; i += 1) await expect(refresher?.refresh()).rejects.toThrow();
    expect(lines.filter((l) => l.code === "CERT_DOWNLOAD_FAILED").map((l) => l.level)).toEqual([40, 40, 40]);
  });

  it("a public-key merchant that holds downloaded certificates warns at every failure too", async () => {
    const merchant = createTestMerchant();
    fake.answer = { kind: "list", certificates: [certA], apiV3Key: merchant.apiV3Key };
    const { logger, lines } = capturingLogger();
    const ingress = await envIngress("cert-refresh-switch", merchant, { publicKey: true, logger });
    expect(ingress.merchants.defaultMerchant.keys.has(certA.serial)).toBe(true);
    // During WeChat's switch to the public key it signs with certA too: a failing download is worth a warning.
    fake.answer = { kind: "status", status: 500 };
    const refresher = ingress.merchants.defaultMerchant.certificateRefresher;
    for (let i = 0; i < 3; i += 1) await expect(refresher?.refresh()).rejects.toThrow();
    expect(lines.filter((l) => l.code === "CERT_DOWNLOAD_FAILED").map((l) => l.level)).toEqual([40, 40, 40]);
  });
});
