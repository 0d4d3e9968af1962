import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CertificateRefresher,
  createSignedV3Notification,
  downloadCertificates,
  KeyStore,
  type LoadedCertificate,
  loadCertificate,
  readV3Headers,
  verifyV3Async,
  WechatPayError,
} from "../src/index.ts";
import { certificateEntry, type FakeWechat, signedJson, startFakeWechat } from "./support/fake-wechat.ts";
import {
  asyncCodeOf,
  codeOf,
  platformCert,
  rsaKeyPair,
  TEST_APIV3_KEY,
  type TestPlatformCert,
} from "./support/keys.ts";

let oldCert: TestPlatformCert;
let newCert: TestPlatformCert;
const NOW = new Date();

beforeAll(() => {
  oldCert = platformCert("1111111111111111111111111111111111111111");
  newCert = platformCert("2222222222222222222222222222222222222222");
});

/** A download stub whose result and calls the test controls; the clock is a plain variable. */
function setup(opts: { result?: () => LoadedCertificate[]; fail?: unknown; minIntervalMs?: number } = {}) {
  const store = new KeyStore();
  store.addCertificate(oldCert.pem);
  let clock = 1_000_000;
  let calls = 0;
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;
  const refresher = new CertificateRefresher({
    store,
    minIntervalMs: opts.minIntervalMs,
    now: () => clock,
    download: async () => {
      calls += 1;
      if (gate) await gate;
      if (opts.fail !== undefined) throw opts.fail;
      return opts.result ? opts.result() : [loadCertificate(oldCert.pem), loadCertificate(newCert.pem)];
    },
  });
  return {
    store,
    refresher,
    calls: () => calls,
    advance: (ms: number) => {
      clock += ms;
    },
    hold: () => {
      gate = new Promise<void>((resolve) => {
        release = resolve;
      });
    },
    release: () => {
      gate = undefined;
      release?.();
    },
  };
}

describe("CertificateRefresher", () => {
  it("known serials resolve without any download", async () => {
    const t = setup();
    await expect(t.refresher.resolveOrRefresh(oldCert.serial, NOW)).resolves.toBeDefined();
    expect(t.calls()).toBe(0);
  });

  it("an unknown serial triggers one download and then resolves", async () => {
    const t = setup();
    const key = await t.refresher.resolveOrRefresh(newCert.serial.toLowerCase(), NOW);
    expect(key.equals(newCert.publicKey)).toBe(true);
    expect(t.calls()).toBe(1);
    expect(t.refresher.downloadCount).toBe(1);
    // Now known: no further download.
    await t.refresher.resolve(newCert.serial, NOW);
    expect(t.calls()).toBe(1);
  });

  it("forged serials: at most one download per minute, then SERIAL_UNKNOWN without downloading", async () => {
    const t = setup();
    expect(await asyncCodeOf(() => t.refresher.resolveOrRefresh("DEADBEEF01", NOW))).toBe("SERIAL_UNKNOWN");
    expect(t.calls()).toBe(1);
    for (let i = 0; i < 50; i++) {
      t.advance(1000); // 50 s in total: still inside the minute
      expect(await asyncCodeOf(() => t.refresher.resolveOrRefresh(`DEADBEEF${i}`, NOW))).toBe("SERIAL_UNKNOWN");
    }
    expect(t.calls()).toBe(1);
    let message = "";
    try {
      await t.refresher.resolveOrRefresh("DEADBEEF", NOW);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/download skipped \(last attempt 50 s ago, at most one per 60 s\)/);
    t.advance(10_000); // 60 s after the first attempt
    expect(await asyncCodeOf(() => t.refresher.resolveOrRefresh("DEADBEEF02", NOW))).toBe("SERIAL_UNKNOWN");
    expect(t.calls()).toBe(2);
  });

  it("concurrent misses share one in-flight download", async () => {
    const t = setup();
    t.hold();
    const pending = Array.from({ length: 20 }, () => t.refresher.resolveOrRefresh(newCert.serial, NOW));
    await Promise.resolve();
    t.release();
    const keys = await Promise.all(pending);
    expect(keys.every((k) => k.equals(newCert.publicKey))).toBe(true);
    expect(t.calls()).toBe(1);
  });

  it("a serial that appears while throttled is still found", async () => {
    const t = setup({ result: () => [loadCertificate(oldCert.pem)] });
    await t.refresher.refresh();
    t.store.addCertificate(newCert.pem);
    await expect(t.refresher.refresh()).resolves.toBe(false);
    await expect(t.refresher.resolveOrRefresh(newCert.serial, NOW)).resolves.toBeDefined();
    expect(t.calls()).toBe(1);
  });

  it("a known but expired certificate does not trigger a download", async () => {
    const t = setup();
    const later = new Date(NOW.getTime() + 10 * 365 * 86_400_000);
    expect(await asyncCodeOf(() => t.refresher.resolveOrRefresh(oldCert.serial, later))).toBe("CERTIFICATE_EXPIRED");
    expect(t.calls()).toBe(0);
  });

  it("an unknown public-key id never triggers a download: no certificate list can bring one", async () => {
    const t = setup();
    const unknownId = "PUB_KEY_ID_0000000000000024101100397200000006";
    // A store of certificates alone: the id is WeChat's public key, which this merchant has not configured.
    expect(await asyncCodeOf(() => t.refresher.resolveOrRefresh(unknownId, NOW))).toBe("PUBLIC_KEY_NOT_CONFIGURED");
    expect(t.calls()).toBe(0);
    // Nor does it use up the minute's download: a rotated-in certificate right after is still fetched.
    await expect(t.refresher.resolveOrRefresh(newCert.serial, NOW)).resolves.toBeDefined();
    expect(t.calls()).toBe(1);
  });

  it("a failed download rejects with CERT_DOWNLOAD_FAILED and still counts for the throttle", async () => {
    const failure = new WechatPayError("CERT_DOWNLOAD_FAILED", "HTTP 500");
    const t = setup({ fail: failure });
    let error: unknown;
    try {
      await t.refresher.resolveOrRefresh(newCert.serial, NOW);
    } catch (e) {
      error = e;
    }
    expect(error).toBe(failure);
    expect(await asyncCodeOf(() => t.refresher.resolveOrRefresh(newCert.serial, NOW))).toBe("SERIAL_UNKNOWN");
    expect(t.calls()).toBe(1);
  });

  it("an empty list is a failed download; lastDownloadFailed tells a throttled refresh after a failure", async () => {
    const t = setup({ result: () => [] });
    await expect(t.refresher.refresh()).rejects.toMatchObject({ code: "CERT_DOWNLOAD_FAILED" });
    expect(t.refresher.lastDownloadFailed).toBe(true);
    await expect(t.refresher.refresh()).resolves.toBe(false);
    expect(t.store.has(oldCert.serial)).toBe(true);
  });

  it("a certificate WeChat stops listing is removed; configured ones are never removed", async () => {
    const third = platformCert("3333333333333333333333333333333333333333");
    let listed = [loadCertificate(newCert.pem), loadCertificate(third.pem)];
    const t = setup({ result: () => listed, minIntervalMs: 0 });
    await t.refresher.refresh();
    expect(t.refresher.lastDownloadFailed).toBe(false);
    expect([t.store.has(oldCert.serial), t.store.has(newCert.serial), t.store.has(third.serial)]).toEqual([
      true,
      true,
      true,
    ]);
    // WeChat withdraws `third` (and never listed the configured `oldCert`).
    listed = [loadCertificate(newCert.pem)];
    await t.refresher.refresh();
    expect([t.store.has(oldCert.serial), t.store.has(newCert.serial), t.store.has(third.serial)]).toEqual([
      true,
      true,
      false,
    ]);
    // A configured certificate WeChat lists and later withdraws stays: it was not the refresher's to remove.
    listed = [loadCertificate(oldCert.pem), loadCertificate(newCert.pem)];
    await t.refresher.refresh();
    listed = [loadCertificate(newCert.pem)];
    await t.refresher.refresh();
    expect(t.store.has(oldCert.serial)).toBe(true);
  });

  it("inherited certificates are added and owned: downloaded() lists them, a list without them removes them", async () => {
    const store = new KeyStore();
    const refresher = new CertificateRefresher({
      store,
      minIntervalMs: 0,
      inherited: [loadCertificate(newCert.pem)],
      download: async () => [loadCertificate(oldCert.pem)],
    });
    expect(store.has(newCert.serial)).toBe(true);
    expect(refresher.downloaded().map((c) => c.serial)).toEqual([newCert.serial]);
    await refresher.refresh();
    expect(store.has(newCert.serial)).toBe(false);
    expect(refresher.downloaded().map((c) => c.serial)).toEqual([oldCert.serial]);
  });

  it("a certificate listed past its expiry (WeChat retired it) is not trusted, and one it held is dropped", async () => {
    const third = platformCert("3333333333333333333333333333333333333333");
    const fourth = platformCert("4444444444444444444444444444444444444444");
    const retiresAt = new Date(NOW.getTime() + 3_600_000);
    // As downloadCertificates hands them out: validity narrowed to the listed expire_time.
    const retiring = (c: TestPlatformCert): LoadedCertificate => ({ ...loadCertificate(c.pem), notAfter: retiresAt });
    let listed = [retiring(third), loadCertificate(fourth.pem)];
    let wall = NOW;
    const store = new KeyStore();
    store.addCertificate(oldCert.pem); // configured: never the refresher's to remove, whatever its validity
    const refresher = new CertificateRefresher({
      store,
      minIntervalMs: 0,
      wallClock: () => wall,
      download: async () => listed,
    });
    await refresher.refresh();
    expect([store.has(third.serial), store.has(fourth.serial)]).toEqual([true, true]);
    // Within the minute of clock tolerance after its retirement it is still held...
    wall = new Date(retiresAt.getTime() + 60_000);
    await refresher.refresh();
    expect(store.has(third.serial)).toBe(true);
    // ...past it, the next download drops it although WeChat still lists it.
    wall = new Date(retiresAt.getTime() + 60_001);
    await expect(refresher.refresh()).resolves.toBe(true);
    expect([store.has(third.serial), store.has(fourth.serial)]).toEqual([false, true]);
    expect(refresher.downloaded().map((c) => c.serial)).toEqual([fourth.serial]);
    // A verified list of retired certificates only is WeChat's word too: nothing of it is trusted any longer.
    listed = [retiring(fourth)];
    await expect(refresher.refresh()).resolves.toBe(true);
    expect([store.has(fourth.serial), store.has(oldCert.serial)]).toEqual([false, true]);
    expect(refresher.downloaded()).toEqual([]);
  });

  it("a downloaded certificate past its expiry is dropped at the next download also when that download fails", async () => {
    // A merchant moved to WeChat's public key: /v3/certificates fails from then on (404 证书不存在), and what the
    // last download brought must not be held after it ran out until the process restarts.
    const third = platformCert("3333333333333333333333333333333333333333");
    const retiresAt = new Date(NOW.getTime() + 3_600_000);
    let fail = false;
    let wall = NOW;
    const store = new KeyStore();
    const refresher = new CertificateRefresher({
      store,
      minIntervalMs: 0,
      wallClock: () => wall,
      download: async () => {
        if (fail) throw new Error("404 证书不存在");
        return [{ ...loadCertificate(third.pem), notAfter: retiresAt }];
      },
    });
    await refresher.refresh();
    fail = true;
    // Within the minute of clock tolerance it still verifies: kept through a failure.
    wall = new Date(retiresAt.getTime() + 60_000);
    await expect(refresher.refresh()).rejects.toThrow(WechatPayError);
    expect(store.has(third.serial)).toBe(true);
    wall = new Date(retiresAt.getTime() + 60_001);
    await expect(refresher.refresh()).rejects.toThrow(WechatPayError);
    expect(store.has(third.serial)).toBe(false);
    expect(refresher.downloaded()).toEqual([]);
  });

  it("a configured certificate WeChat lists with an earlier expire_time is refused from then on, though never removed", async () => {
    // The configured oldCert is valid for years by its X.509 dates; WeChat announces its retirement in an hour.
    const retiresAt = new Date(NOW.getTime() + 3_600_000);
    let listed = [{ ...loadCertificate(oldCert.pem), notAfter: retiresAt }, loadCertificate(newCert.pem)];
    const t = setup({ result: () => listed, minIntervalMs: 0 });
    await t.refresher.refresh();
    expect(t.refresher.downloaded().map((c) => c.serial)).toEqual([newCert.serial]);
    const held = t.store.certificate(oldCert.serial);
    expect(held?.notAfter).toEqual(retiresAt);
    expect(codeOf(() => t.store.resolve(oldCert.serial, new Date(retiresAt.getTime() + 60_001)))).toBe(
      "CERTIFICATE_EXPIRED",
    );
    // Listed already past its retirement: refused at once, and still not the refresher's to remove.
    const retiredAt = new Date(Date.now() - 3_600_000);
    listed = [{ ...loadCertificate(oldCert.pem), notAfter: retiredAt }, loadCertificate(newCert.pem)];
    await t.refresher.refresh();
    expect(codeOf(() => t.store.resolve(oldCert.serial, new Date()))).toBe("CERTIFICATE_EXPIRED");
    expect(t.store.certificate(oldCert.serial)?.publicKey).toBe(held?.publicKey);
    listed = [loadCertificate(newCert.pem)];
    await t.refresher.refresh();
    expect(t.store.has(oldCert.serial)).toBe(true);
  });

  it("a certificate listed again keeps its key object, with the validity of the latest listing; a re-issue replaces it", async () => {
    // Every download parses the list afresh. RsaVerifyPool hands each key object to its threads once and they keep it:
    // a new object per download for the same certificate (hourly) was one more key held by every thread, forever.
    const third = platformCert("3333333333333333333333333333333333333333");
    const retiresAt = new Date(NOW.getTime() + 3_600_000);
    let listed = () => [loadCertificate(third.pem)];
    const t = setup({ result: () => listed(), minIntervalMs: 0 });
    await t.refresher.refresh();
    const first = t.store.certificate(third.serial)?.publicKey;
    expect(first).toBeDefined();
    await t.refresher.refresh();
    expect(t.store.certificate(third.serial)?.publicKey).toBe(first);
    // WeChat moves its retirement forward: same key object, the listing's new validity.
    listed = () => [{ ...loadCertificate(third.pem), notAfter: retiresAt }];
    await t.refresher.refresh();
    expect(t.store.certificate(third.serial)?.publicKey).toBe(first);
    expect(t.store.certificate(third.serial)?.notAfter).toEqual(retiresAt);
    // A certificate re-issued under the same serial (another PEM, another key) wins.
    const reissued = platformCert(third.serial);
    listed = () => [loadCertificate(reissued.pem)];
    await t.refresher.refresh();
    expect(t.store.certificate(third.serial)?.pem).toBe(loadCertificate(reissued.pem).pem);
    expect(t.store.certificate(third.serial)?.publicKey).not.toBe(first);
  });

  it("wraps foreign download errors", async () => {
    const t = setup({ fail: new TypeError("boom") });
    let error: unknown;
    try {
      await t.refresher.refresh();
    } catch (e) {
      error = e;
    }
    expect((error as WechatPayError).code).toBe("CERT_DOWNLOAD_FAILED");
    expect((error as WechatPayError).cause).toBeInstanceOf(TypeError);
  });

  it("custom interval and validation", async () => {
    const t = setup({ minIntervalMs: 0 });
    await t.refresher.refresh();
    await t.refresher.refresh();
    expect(t.calls()).toBe(2);
    expect(
      () => new CertificateRefresher({ store: new KeyStore(), download: async () => [], minIntervalMs: -1 }),
    ).toThrow(RangeError);
    const defaults = new CertificateRefresher({
      store: new KeyStore(),
      download: async () => [loadCertificate(oldCert.pem)],
    });
    await expect(defaults.refresh()).resolves.toBe(true);
    await expect(defaults.refresh()).resolves.toBe(false);
  });
});

describe("end to end: a notification signed with a brand-new certificate", () => {
  let fake: FakeWechat;
  beforeAll(async () => {
    fake = await startFakeWechat();
  });
  afterAll(() => fake.close());

  it("is verified after one lazy download from the fake WeChat", async () => {
    const merchant = rsaKeyPair();
    fake.respond = () =>
      signedJson({
        body: JSON.stringify({
          data: [oldCert, newCert].map((c) =>
            certificateEntry({ pem: c.pem, serial: c.serial, apiV3Key: TEST_APIV3_KEY }),
          ),
        }),
        privateKey: newCert.privateKey,
        serial: newCert.serial,
      });
    const store = new KeyStore();
    store.addCertificate(oldCert.pem);
    const refresher = new CertificateRefresher({
      store,
      download: () =>
        downloadCertificates({
          baseUrl: fake.baseUrl,
          mchid: "1900000001",
          merchantSerialNo: "ABCDEF",
          merchantPrivateKey: merchant.privateKey,
          apiV3Key: TEST_APIV3_KEY,
          trustedKeys: store,
        }),
    });
    const notification = createSignedV3Notification({
      eventType: "TRANSACTION.SUCCESS",
      originalType: "transaction",
      resource: { hello: "world" },
      apiV3Key: TEST_APIV3_KEY,
      privateKey: newCert.privateKey,
      serial: newCert.serial,
    });
    const headers = readV3Headers(notification.headers);
    await expect(verifyV3Async(headers, notification.body, { keys: refresher })).resolves.toBeUndefined();
    expect(fake.requests).toHaveLength(1);
    expect(store.describe().map((e) => e.id)).toEqual([oldCert.serial, newCert.serial]);
    // A forged serial right after: no second request to WeChat.
    expect(
      await asyncCodeOf(() => verifyV3Async({ ...headers, serial: "FORGED" }, notification.body, { keys: refresher })),
    ).toBe("SERIAL_UNKNOWN");
    expect(fake.requests).toHaveLength(1);
  });
});
