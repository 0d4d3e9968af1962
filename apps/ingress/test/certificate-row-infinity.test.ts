import { createTestDatabase, createTestMerchant, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prismaMerchantSource } from "../src/merchants/prisma-source.ts";
import { platformCertificate } from "./support/certificate.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";
import { insertCertificateMerchant, insertMerchant } from "./support/merchant-row.ts";

/**
 * PostgreSQL's timestamp columns take 'infinity' and '-infinity' (an operator's "never retires"), which Prisma reads
 * as an Invalid Date: a PlatformCertificate row holding one must cost its own certificate at most, never the reload
 * of the whole table (the ingress's start, every other tenant).
 */
let db: TestDatabase;
let f: IngressFixture;
const good = createTestMerchant({ mchid: "1900000881" });
const tenant = createTestMerchant({ mchid: "1900000882" });
const cert = platformCertificate(tenant.platformPrivateKey);

/** Sets the certificate row's `column` to PostgreSQL's `value` ('infinity', '-infinity') as SQL would. */
function setValidity(column: "notBefore" | "notAfter", value: string) {
  return db.db.prisma.$executeRawUnsafe(
    `UPDATE "PlatformCertificate" SET "${column}" = $1::timestamp WHERE serial = $2`,
    value,
    cert.serial,
  );
}

beforeAll(async () => {
  db = await createTestDatabase("ingress_cert_inf");
  await insertMerchant(db.db.prisma, good);
  // The tenant verifies with its public key and a platform certificate row.
  await insertCertificateMerchant(
    db.db.prisma,
    tenant,
    cert,
    { notBefore: new Date(Date.now() - 3_600_000), notAfter: new Date(Date.now() + 86_400_000) },
    { publicKey: true },
  );
  await setValidity("notAfter", "infinity");
  f = await createIngressFixture({ label: "ingress-cert-inf", source: prismaMerchantSource(db.db.prisma) });
});
afterAll(async () => {
  await f?.close();
  await db?.drop();
});

describe("a PlatformCertificate row whose validity is PostgreSQL's infinity", () => {
  it("at start: the table loads, the other tenants are served; that certificate is refused (MERCHANT_KEY_UNUSABLE), the row's public key serves", async () => {
    expect(f.merchants.tableLoaded).toBe(true);
    expect((await post(f.app, `/notify/v3/${good.mchid}`, signedV3(good))).statusCode).toBe(204);
    expect((await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant))).statusCode).toBe(204);
    const byCertificate = await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant, { serial: cert.serial }));
    expect(byCertificate.statusCode).toBe(401);
    expect(f.merchants.refusals).toEqual({ MERCHANT_KEY_UNUSABLE: 1 });
  });

  it("edited in while running: the reload completes, the certificate loaded before is kept; fixed, it is served as the row says", async () => {
    await setValidity("notAfter", new Date(Date.now() + 86_400_000).toISOString());
    await expect(f.merchants.reload()).resolves.toBe(true);
    expect(f.merchants.refusals).toEqual({});
    expect(
      (await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant, { serial: cert.serial }))).statusCode,
    ).toBe(204);

    await setValidity("notBefore", "-infinity");
    await expect(f.merchants.reload()).resolves.toBe(true);
    expect(f.merchants.keptKeys).toBe(1);
    expect(
      (await post(f.app, `/notify/v3/${tenant.mchid}`, signedV3(tenant, { serial: cert.serial }))).statusCode,
    ).toBe(204);
    expect((await post(f.app, `/notify/v3/${good.mchid}`, signedV3(good))).statusCode).toBe(204);
  });
});
