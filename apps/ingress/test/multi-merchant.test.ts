import { createTestDatabase, createTestMerchant, type TestDatabase, type TestMerchant } from "@wpn/testing";
import { buildV2Xml, encryptV2ReqInfo, signV2 } from "@wpn/wechatpay";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prismaMerchantSource } from "../src/merchants/prisma-source.ts";
import { platformCertificate } from "./support/certificate.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";
import { insertCertificateMerchant, insertMerchant } from "./support/merchant-row.ts";

let db: TestDatabase;
let f: IngressFixture;
let second: TestMerchant;
/** The registry's clock, moved by the tests to cross its one-lookup-per-minute limit. */
let now = Date.now();

/** An APIv2 notification posted as WeChat does (text/xml). */
function postXml(app: FastifyInstance, url: string, xml: string) {
  return app.inject({ method: "POST", url, headers: { "content-type": "text/xml" }, payload: xml });
}

beforeAll(async () => {
  db = await createTestDatabase("ingress_mm");
  second = createTestMerchant({ mchid: "1900000222", appid: "wx0000000000000222" });
  await insertMerchant(db.db.prisma, second);
  f = await createIngressFixture({
    label: "ingress-mm",
    source: prismaMerchantSource(db.db.prisma),
    registryClock: () => now,
  });
});
afterAll(async () => {
  await f?.close();
  await db?.drop();
});

describe("multi-merchant routes", () => {
  it("verifies /notify/v3/:mchid with that merchant's key from the Merchant table", async () => {
    const n = signedV3(second);
    const response = await post(f.app, `/notify/v3/${second.mchid}`, n);
    expect(response.statusCode).toBe(204);
    expect((await f.queue.getJob(n.jobId))?.data).toMatchObject({ mchid: second.mchid });
  });

  it("keeps merchants apart: another merchant's key does not verify (401 SERIAL_UNKNOWN)", async () => {
    const response = await post(f.app, `/notify/v3/${second.mchid}`, signedV3(f.merchant));
    expect(response.statusCode).toBe(401);
    expect(response.json()).toEqual({ code: "FAIL", message: "SERIAL_UNKNOWN: unknown Wechatpay-Serial" });
  });

  it("serves the environment's merchant under its own mchid too", async () => {
    const n = signedV3(f.merchant);
    expect((await post(f.app, `/notify/v3/${f.merchant.mchid}`, n)).statusCode).toBe(204);
  });

  it("uses the row's APIv2 key on /notify/v2/:mchid", async () => {
    const fields = {
      mch_id: second.mchid,
      transaction_id: "4200000000000000000000000222",
      return_code: "SUCCESS",
      result_code: "SUCCESS",
    };
    const xml = buildV2Xml({ ...fields, sign: signV2(fields, second.apiV2Key, "MD5") });
    const response = await postXml(f.app, `/notify/v2/${second.mchid}`, xml);
    expect(response.statusCode).toBe(200);
    expect((await f.queue.getJob(`v2:pay:${second.mchid}.4200000000000000000000000222`))?.data).toMatchObject({
      mchid: second.mchid,
    });
  });

  it("accepts a row's apiV2KeyPrevious after an APIv2 key rotation", async () => {
    const rotating = createTestMerchant({ mchid: "1900000777", appid: "wx0000000000000777" });
    await insertMerchant(db.db.prisma, rotating);
    await db.db.prisma.merchant.update({
      where: { mchid: rotating.mchid },
      data: { apiV2Key: "r".repeat(32), apiV2KeyPrevious: rotating.apiV2Key },
    });
    now += 61_000;
    const fields = {
      mch_id: rotating.mchid,
      transaction_id: "4200000000000000000000000777",
      return_code: "SUCCESS",
      result_code: "SUCCESS",
    };
    const xml = buildV2Xml({ ...fields, sign: signV2(fields, rotating.apiV2Key, "MD5") });
    const response = await postXml(f.app, `/notify/v2/${rotating.mchid}`, xml);
    expect(response.statusCode).toBe(200);
    // The lookup used this minute's reload: the next test starts with a new one.
    now += 61_000;
  });

  it("a row serving one API answers the other's route: APIv3-only 404 V2_DISABLED, APIv2-only 401 on APIv3", async () => {
    const v3Only = createTestMerchant({ mchid: "1900000881", appid: "wx0000000000000881" });
    await insertMerchant(db.db.prisma, v3Only);
    await db.db.prisma.merchant.update({ where: { mchid: v3Only.mchid }, data: { apiV2Key: null } });
    const v2Only = createTestMerchant({ mchid: "1900000882", appid: "wx0000000000000882" });
    await db.db.prisma.merchant.create({
      data: { mchid: v2Only.mchid, appid: v2Only.appid, apiV3Key: v2Only.apiV3Key, apiV2Key: v2Only.apiV2Key },
    });
    now += 61_000;
    // The environment's APIv2 key enables APIv2 for the environment's merchant only.
    expect(f.merchant.env.WECHATPAY_APIV2_KEY).toBeDefined();
    const fields = { mch_id: v3Only.mchid, transaction_id: "4200000000000000000000000881", return_code: "SUCCESS" };
    const v2 = await postXml(
      f.app,
      `/notify/v2/${v3Only.mchid}`,
      buildV2Xml({ ...fields, sign: signV2(fields, v3Only.apiV2Key, "MD5") }),
    );
    expect([v2.statusCode, v2.body]).toEqual([
      404,
      "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[V2_DISABLED: APIv2 notifications are not enabled]]></return_msg></xml>",
    ]);
    const byPublicKey = await post(f.app, `/notify/v3/${v2Only.mchid}`, signedV3(v2Only));
    expect([byPublicKey.statusCode, byPublicKey.json()]).toEqual([
      401,
      { code: "FAIL", message: "PUBLIC_KEY_NOT_CONFIGURED: WeChat Pay public key not configured" },
    ]);
    const byCertificate = await post(
      f.app,
      `/notify/v3/${v2Only.mchid}`,
      signedV3(v2Only, { serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1" }),
    );
    expect([byCertificate.statusCode, byCertificate.json()]).toEqual([
      401,
      { code: "FAIL", message: "SERIAL_UNKNOWN: unknown Wechatpay-Serial" },
    ]);
    now += 61_000;
  });

  it("a v2 payment signed by one merchant cannot name another: 400, nothing queued, the other's transaction id stays free", async () => {
    const before = await f.jobsEverAdded();
    const transactionId = "4200000000000000000000000333";
    // Merchant `second` signs (with its own APIv2 key) XML naming the environment's merchant.
    const forged = {
      mch_id: f.merchant.mchid,
      transaction_id: transactionId,
      return_code: "SUCCESS",
      result_code: "SUCCESS",
    };
    const response = await postXml(
      f.app,
      `/notify/v2/${second.mchid}`,
      buildV2Xml({ ...forged, sign: signV2(forged, second.apiV2Key, "MD5") }),
    );
    expect(response.statusCode).toBe(400);
    expect(response.body).toContain("PAYLOAD_INVALID");
    expect(await f.jobsEverAdded()).toBe(before);
    // Even one naming itself with the other's transaction id takes nothing from the other: ids carry the merchant.
    const own = { mch_id: second.mchid, transaction_id: transactionId, return_code: "SUCCESS", result_code: "SUCCESS" };
    const genuine = {
      mch_id: f.merchant.mchid,
      transaction_id: transactionId,
      return_code: "SUCCESS",
      result_code: "SUCCESS",
    };
    for (const [url, fields, key] of [
      [`/notify/v2/${second.mchid}`, own, second.apiV2Key],
      ["/notify/v2", genuine, f.merchant.apiV2Key],
    ] as const) {
      const answer = await postXml(f.app, url, buildV2Xml({ ...fields, sign: signV2(fields, key, "MD5") }));
      expect(answer.statusCode).toBe(200);
    }
    expect(await f.jobsEverAdded()).toBe(before + 2);
    expect(await f.queue.getJob(`v2:pay:${f.merchant.mchid}.${transactionId}`)).toBeDefined();
  });

  it("keeps two merchants' refunds with the same numbers apart (the merchant whose key opened req_info is in the id)", async () => {
    const before = await f.jobsEverAdded();
    const refundOf = (m: TestMerchant) =>
      buildV2Xml({
        return_code: "SUCCESS",
        mch_id: m.mchid,
        req_info: encryptV2ReqInfo(
          {
            out_refund_no: "R0001",
            out_trade_no: "T1",
            refund_id: "50300000000000000000000000000001",
            refund_status: "SUCCESS",
          },
          m.apiV2Key,
        ),
      });
    for (const [m, url] of [
      [f.merchant, "/notify/v2"],
      [second, `/notify/v2/${second.mchid}`],
    ] as const) {
      const response = await postXml(f.app, url, refundOf(m));
      expect(response.statusCode).toBe(200);
      expect(
        (await f.queue.getJob(`v2:refund:${m.mchid}.50300000000000000000000000000001.SUCCESS`))?.data,
      ).toMatchObject({
        mchid: m.mchid,
      });
    }
    expect(await f.jobsEverAdded()).toBe(before + 2);
  });

  it("404 MERCHANT_UNKNOWN for an unknown mchid; a merchant added later is found by at most one reload per minute", async () => {
    const third = createTestMerchant({ mchid: "1900000333", appid: "wx0000000000000333" });
    const n = signedV3(third);
    const unknown = await post(f.app, `/notify/v3/${third.mchid}`, n);
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toEqual({ code: "FAIL", message: "MERCHANT_UNKNOWN: unknown merchant" });

    await insertMerchant(db.db.prisma, third);
    now += 30_000;
    // Within the minute: no reload, still unknown (junk mchids cannot turn into database load).
    expect((await post(f.app, `/notify/v3/${third.mchid}`, n)).statusCode).toBe(404);
    now += 31_000;
    const found = await post(f.app, `/notify/v3/${third.mchid}`, n);
    expect(found.statusCode).toBe(204);
    expect(await f.queue.getJob(n.jobId)).toBeDefined();
  });

  it("never looks up a stale or probe request for an unknown mchid (401 before any reload)", async () => {
    now += 120_000;
    const fourth = createTestMerchant({ mchid: "1900000444" });
    await insertMerchant(db.db.prisma, fourth);
    const stale = await post(
      f.app,
      `/notify/v3/${fourth.mchid}`,
      signedV3(fourth, { now: new Date(Date.now() - 600_000) }),
    );
    expect(stale.statusCode).toBe(401);
    expect(f.merchants.get(fourth.mchid)).toBeUndefined();
    const probe = await post(f.app, `/notify/v3/${fourth.mchid}`, signedV3(fourth, { probe: true }));
    expect(probe.statusCode).toBe(401);
    expect(f.merchants.get(fourth.mchid)).toBeUndefined();
  });

  it("verifies with a PlatformCertificate row (certificate mode, no public key)", async () => {
    now += 120_000;
    const fifth = createTestMerchant({ mchid: "1900000555" });
    const cert = platformCertificate(fifth.platformPrivateKey);
    await insertCertificateMerchant(db.db.prisma, fifth, cert, {
      notBefore: new Date(Date.now() - 3_600_000),
      notAfter: new Date(Date.now() + 86_400_000),
    });
    const n = signedV3(fifth, { serial: cert.serial });
    expect((await post(f.app, `/notify/v3/${fifth.mchid}`, n)).statusCode).toBe(204);
    // Java-style lower-case serials name the same certificate.
    const lower = signedV3(fifth, { serial: cert.serial.toLowerCase() });
    expect((await post(f.app, `/notify/v3/${fifth.mchid}`, lower)).statusCode).toBe(204);
    // The merchant's v2 route is off: the row has no APIv2 key.
    const v2 = await postXml(f.app, `/notify/v2/${fifth.mchid}`, "<xml><return_code>SUCCESS</return_code></xml>");
    expect(v2.statusCode).toBe(404);
  });

  it("a PlatformCertificate row's validity columns bound its certificate, as the dashboard shows them (WeChat's expire_time)", async () => {
    const retired = createTestMerchant({ mchid: "1900000556" });
    // Valid for 30 days by its X.509 dates; the row records the earlier retirement WeChat listed (expire_time).
    const cert = platformCertificate(retired.platformPrivateKey);
    await insertCertificateMerchant(db.db.prisma, retired, cert, {
      notBefore: new Date(Date.now() - 3_600_000),
      notAfter: new Date(Date.now() - 600_000),
    });
    await f.merchants.reload();
    const refused = await post(f.app, `/notify/v3/${retired.mchid}`, signedV3(retired, { serial: cert.serial }));
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toEqual({ code: "FAIL", message: "CERTIFICATE_EXPIRED: platform certificate expired" });

    // An edit of the columns alone is picked up by the next reload (never beyond the X.509 validity).
    await db.db.prisma.platformCertificate.update({
      where: { serial: cert.serial },
      data: { notAfter: new Date(Date.now() + 86_400_000) },
    });
    await f.merchants.reload();
    expect(
      (await post(f.app, `/notify/v3/${retired.mchid}`, signedV3(retired, { serial: cert.serial }))).statusCode,
    ).toBe(204);
    await db.db.prisma.platformCertificate.update({
      where: { serial: cert.serial },
      data: { notBefore: new Date(Date.now() + 600_000) },
    });
    await f.merchants.reload();
    const early = await post(f.app, `/notify/v3/${retired.mchid}`, signedV3(retired, { serial: cert.serial }));
    expect(early.json()).toEqual({
      code: "FAIL",
      message: "CERTIFICATE_NOT_YET_VALID: platform certificate not yet valid",
    });
  });

  it("a PlatformCertificate row whose serial is not its PEM's is refused: 401, the merchant's other keys verify, metrics and readiness say so until it is fixed", async () => {
    const tenant = createTestMerchant({ mchid: "1900000558" });
    await insertMerchant(db.db.prisma, tenant);
    const cert = platformCertificate(tenant.platformPrivateKey);
    // The serial of another certificate, filed over this one's PEM (a copy-paste slip).
    const wrong = platformCertificate(createTestMerchant().platformPrivateKey).serial;
    await db.db.prisma.platformCertificate.create({
      data: {
        serial: wrong,
        mchid: tenant.mchid,
        pem: cert.pem,
        notBefore: new Date(Date.now() - 86_400_000),
        notAfter: new Date(Date.now() + 86_400_000),
      },
    });
    await f.merchants.reload();
    // Before: 204, verified with a key filed under a serial the row does not say.
    const misfiled = await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant, { serial: cert.serial }));
    expect(misfiled.statusCode).toBe(401);
    expect((await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant))).statusCode).toBe(204);
    const metrics = (await f.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(/^wpn_ingress_merchant_refusals\{code="CERTIFICATE_SERIAL_MISMATCH"\} 1$/m);
    const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().merchantRefusals).toEqual({ CERTIFICATE_SERIAL_MISMATCH: 1 });

    // Fixed: the column edited to the PEM's serial (the PEM unchanged) is read by the next reload.
    await db.db.prisma.platformCertificate.update({ where: { serial: wrong }, data: { serial: cert.serial } });
    await f.merchants.reload();
    expect(
      (await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant, { serial: cert.serial }))).statusCode,
    ).toBe(204);
    expect((await f.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(
      /^wpn_ingress_merchant_refusals\{code="CERTIFICATE_SERIAL_MISMATCH"\} 0$/m,
    );
    expect((await f.app.inject({ method: "GET", url: "/health/ready" })).json().merchantRefusals).toEqual({});
  });

  it("a public-key edit that does not load leaves the row with an APIv2 key verifying (kept key, counted)", async () => {
    const edited = createTestMerchant({ mchid: "1900000888", appid: "wx0000000000000888" });
    await insertMerchant(db.db.prisma, edited);
    await f.merchants.reload();
    expect((await post(f.app, `/notify/v3/${edited.mchid}`, signedV3(edited))).statusCode).toBe(204);
    await db.db.prisma.merchant.update({
      where: { mchid: edited.mchid },
      data: { publicKeyPem: "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----\n" },
    });
    await f.merchants.reload();
    // Before: 401 SERIAL_UNKNOWN — the APIv2 key made the row "usable", so its APIv3 key was dropped.
    expect((await post(f.app, `/notify/v3/${edited.mchid}`, signedV3(edited))).statusCode).toBe(204);
    const metrics = await f.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(/^wpn_ingress_merchant_keys_kept 1$/m);
    // Cleared on purpose: removed, no longer counted.
    await db.db.prisma.merchant.update({
      where: { mchid: edited.mchid },
      data: { publicKeyId: null, publicKeyPem: null },
    });
    await f.merchants.reload();
    expect((await post(f.app, `/notify/v3/${edited.mchid}`, signedV3(edited))).statusCode).toBe(401);
    expect((await f.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(
      /^wpn_ingress_merchant_keys_kept 0$/m,
    );
  });

  it("drops a disabled merchant on the next background reload", async () => {
    await db.db.prisma.merchant.update({ where: { mchid: second.mchid }, data: { enabled: false } });
    await f.merchants.reload();
    expect(f.merchants.get(second.mchid)).toBeUndefined();
    expect((await post(f.app, `/notify/v3/${second.mchid}`, signedV3(second))).statusCode).toBe(404);
  });
});
