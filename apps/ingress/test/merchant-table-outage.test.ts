import { createDb, type Db } from "@wpn/db";
import {
  createTestDatabase,
  createTestMerchant,
  type DbProxy,
  startDbProxy,
  type TestDatabase,
  type TestMerchant,
} from "@wpn/testing";
import { buildV2Xml, signV2, v2Reply } from "@wpn/wechatpay";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prismaMerchantSource } from "../src/merchants/prisma-source.ts";
import { createIngressFixture, post, signedV3 } from "./support/fixture.ts";
import { insertMerchant } from "./support/merchant-row.ts";
import { pollUntil } from "./support/wait.ts";

/**
 * The Merchant table out of reach: the real PostgreSQL behind a TCP proxy the test takes down (it drops its
 * connections and refuses new ones), the ingress reading the table through it. Before, an ingress started during
 * such an outage answered ready and 404 MERCHANT_UNKNOWN to every tenant (a `Merchant` row's merchant) until a
 * background reload succeeded (30 s later, on-demand ones at most once a minute) — in a chaos run one restarted
 * ingress answered 380 genuine deliveries 404 while its twin accepted them; and a loaded ingress answered 404 to a
 * merchant added during an outage, as if the table had been read.
 */
let db: TestDatabase;
let proxy: DbProxy;
/** The ingress's database connection, through the proxy. */
let proxied: Db;
let tenant: TestMerchant;
/** A merchant whose row is added during an outage, and one that never has a row. */
let added: TestMerchant;
let stranger: TestMerchant;

/** A payment notification of `m` on its APIv2 route, signed with its APIv2 key, posted as WeChat does. */
function postV2(app: FastifyInstance, m: TestMerchant) {
  const fields = {
    mch_id: m.mchid,
    transaction_id: `42000000000000000${Date.now()}`.slice(0, 28),
    return_code: "SUCCESS",
    result_code: "SUCCESS",
  };
  const xml = buildV2Xml({ ...fields, sign: signV2(fields, m.apiV2Key, "MD5") });
  return app.inject({
    method: "POST",
    url: `/notify/v2/${m.mchid}`,
    headers: { "content-type": "text/xml" },
    payload: xml,
  });
}

const UNAVAILABLE_V3 = {
  code: "FAIL",
  message: "MERCHANTS_UNAVAILABLE: merchant table unavailable, please resend",
};

beforeAll(async () => {
  db = await createTestDatabase("ingress_mto");
  proxy = await startDbProxy(db.url);
  proxied = createDb({ url: proxy.via(db.url), poolMax: 2, connectTimeoutMs: 2_000 });
  // Keys are generated here, not beside a running app: a second of RSA key generation blocks its event loop, which
  // the app's load shedding would answer 503 OVERLOADED.
  tenant = createTestMerchant({ mchid: "1900000931", appid: "wx0000000000000931" });
  added = createTestMerchant({ mchid: "1900000932", appid: "wx0000000000000932" });
  stranger = createTestMerchant({ mchid: "1900000939" });
  await insertMerchant(db.db.prisma, tenant);
});
afterAll(async () => {
  await proxied?.close();
  await proxy?.close();
  await db?.drop();
});

describe("merchant table unreachable", () => {
  it("an ingress started without it answers a tenant 503 MERCHANTS_UNAVAILABLE (never 404), stays ready, and loads it within seconds", async () => {
    await proxy.down();
    const f = await createIngressFixture({ label: "ingress-mto-start", source: prismaMerchantSource(proxied.prisma) });
    try {
      const v3 = await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant));
      // Before: 404 MERCHANT_UNKNOWN, as if the tenant did not exist.
      expect(v3.statusCode).toBe(503);
      expect(v3.json()).toEqual(UNAVAILABLE_V3);
      const v2 = await postV2(f.app, tenant);
      expect(v2.statusCode).toBe(503);
      expect(v2.body).toBe(v2Reply(false, UNAVAILABLE_V3.message));
      // The environment's merchant needs only Redis, and so does readiness: a single-merchant deployment stays up.
      expect((await post(f.app, "/notify/v3", signedV3(f.merchant))).statusCode).toBe(204);
      await f.app.ingress.sampler.sample();
      const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toMatchObject({ status: "ready", merchantsLoaded: false });
      expect((await f.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(
        /^wpn_ingress_merchant_table_loaded 0$/m,
      );

      await proxy.up();
      // The failed first load is tried again after 1 s (then 2, 4 … s), not at the 30 s reload.
      expect(await pollUntil(() => f.merchants.tableLoaded, 5_000)).toBe(true);
      expect((await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant))).statusCode).toBe(204);
      expect((await postV2(f.app, tenant)).statusCode).toBe(200);
      expect((await f.app.inject({ method: "GET", url: "/health/ready" })).json()).toMatchObject({
        merchantsLoaded: true,
      });
      expect((await f.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(
        /^wpn_ingress_merchant_table_loaded 1$/m,
      );
    } finally {
      await proxy.up();
      await f.close();
    }
  });

  it("once loaded, an mchid not in memory during an outage is 503 (it may be a merchant added meanwhile), loaded ones are served", async () => {
    let now = Date.now();
    const f = await createIngressFixture({
      label: "ingress-mto-later",
      source: prismaMerchantSource(proxied.prisma),
      registryClock: () => now,
    });
    try {
      await proxy.down();
      await insertMerchant(db.db.prisma, added);
      const during = await post(f.app, `/notify/v3/${added.mchid}`, signedV3(added));
      // Before: 404 MERCHANT_UNKNOWN — the failed on-demand reload was taken for an answer.
      expect(during.statusCode).toBe(503);
      expect(during.json()).toEqual(UNAVAILABLE_V3);
      // Within the minute no reload is tried, and the last one failed: still not known to be unknown.
      now += 30_000;
      expect((await postV2(f.app, added)).statusCode).toBe(503);
      // The merchants in memory are served as before, and the process stays ready.
      expect((await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant))).statusCode).toBe(204);
      await f.app.ingress.sampler.sample();
      const ready = await f.app.inject({ method: "GET", url: "/health/ready" });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toMatchObject({ merchantsLoaded: true });

      await proxy.up();
      now += 31_000;
      expect((await post(f.app, `/notify/v3/${added.mchid}`, signedV3(added))).statusCode).toBe(204);
      // With the table read, an mchid it does not have is unknown again.
      now += 61_000;
      const unknown = await post(f.app, `/notify/v3/${stranger.mchid}`, signedV3(stranger));
      expect(unknown.statusCode).toBe(404);
      expect(unknown.json()).toEqual({ code: "FAIL", message: "MERCHANT_UNKNOWN: unknown merchant" });
    } finally {
      await proxy.up();
      await f.close();
    }
  });
});
