import { readFileSync } from "node:fs";
import { loadConfig } from "@wpn/config";
import { createTestMerchant } from "@wpn/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { defaultMerchantFromConfig, type MerchantRecord, MerchantRegistry } from "../src/merchants/registry.ts";
import { platformCertificate } from "./support/certificate.ts";

const UNUSABLE_CERTIFICATE = {
  serial: "0BAD",
  pem: "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
};

/** A registry over an in-memory "Merchant table" the test edits between reloads. */
function registryOver(rows: MerchantRecord[]) {
  const env = createTestMerchant();
  return new MerchantRegistry({
    defaultMerchant: defaultMerchantFromConfig(loadConfig(env.env)),
    source: { load: async () => rows.map((row) => ({ ...row, certificates: [...row.certificates] })) },
    logger: pino({ level: "silent" }),
  });
}

/** The ids of the keys `registry` holds for `mchid` (undefined when it does not know the merchant). */
const keyIdsOf = (registry: MerchantRegistry, mchid: string) =>
  registry
    .get(mchid)
    ?.keys.describe()
    .map((k) => k.id);

describe("merchant registry: unusable key material", () => {
  const merchant = createTestMerchant({ mchid: "1900000555" });
  const row: MerchantRecord = {
    mchid: merchant.mchid,
    appid: merchant.appid,
    apiV2Key: null,
    publicKeyId: merchant.publicKeyId,
    publicKeyPem: readFileSync(merchant.publicKeyPath, "utf8"),
    certificates: [],
    download: null,
  };

  it("one unusable certificate row beside a good public key leaves the merchant its good key", async () => {
    const registry = registryOver([{ ...row, certificates: [UNUSABLE_CERTIFICATE] }]);
    await registry.reload();
    expect(keyIdsOf(registry, merchant.mchid)).toEqual([merchant.publicKeyId]);
  });

  it("a merchant whose row turns unusable keeps its previous keys; a new unusable one is skipped", async () => {
    const rows = [row];
    const registry = registryOver(rows);
    await registry.reload();
    expect(registry.get(merchant.mchid)).toBeDefined();
    rows[0] = { ...row, publicKeyPem: "not a key", certificates: [UNUSABLE_CERTIFICATE] };
    rows.push({ ...row, mchid: "1900000556", publicKeyPem: "not a key" });
    await registry.reload();
    expect(keyIdsOf(registry, merchant.mchid)).toEqual([merchant.publicKeyId]);
    expect(registry.get("1900000556")).toBeUndefined();
  });

  it("a good certificate row is used beside an unusable one", async () => {
    const cert = platformCertificate(merchant.platformPrivateKey);
    const registry = registryOver([
      { ...row, publicKeyId: null, publicKeyPem: null, certificates: [UNUSABLE_CERTIFICATE, cert] },
    ]);
    await registry.reload();
    expect(keyIdsOf(registry, merchant.mchid)).toEqual([cert.serial]);
  });
});
