import { readFileSync } from "node:fs";
import { loadConfig } from "@wpn/config";
import { createTestMerchant, type TestMerchant } from "@wpn/testing";
import { loadCertificate } from "@wpn/wechatpay";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { defaultMerchantFromConfig, type MerchantRecord, MerchantRegistry } from "../src/merchants/registry.ts";
import { platformCertificate } from "./support/certificate.ts";

const UNUSABLE_CERTIFICATE = {
  serial: "0BAD",
  pem: "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
};

/** What an operator pastes when the copy is cut short: a PEM block that does not parse. */
const TRUNCATED_PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----\n";

/**
 * A registry over an in-memory "Merchant table" the test edits between reloads; its log lines, parsed, go to
 * `logs` when given.
 */
function registryOver(rows: MerchantRecord[], logs?: Record<string, unknown>[]) {
  const env = createTestMerchant();
  return new MerchantRegistry({
    defaultMerchant: defaultMerchantFromConfig(loadConfig(env.env)),
    source: { load: async () => rows.map((row) => ({ ...row, certificates: [...row.certificates] })) },
    logger:
      logs === undefined
        ? pino({ level: "silent" })
        : pino({ level: "debug" }, { write: (line: string) => void logs.push(JSON.parse(line)) }),
  });
}

/** A merchant's row as first configured: its WeChat Pay public key and, unless told otherwise, an APIv2 key. */
function rowOf(merchant: TestMerchant, extra: Partial<MerchantRecord> = {}): MerchantRecord {
  return {
    mchid: merchant.mchid,
    appid: merchant.appid,
    apiV2Key: merchant.apiV2Key,
    publicKeyId: merchant.publicKeyId,
    publicKeyPem: readFileSync(merchant.publicKeyPath, "utf8"),
    certificates: [],
    download: null,
    ...extra,
  };
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

describe("merchant registry: an edit that does not load", () => {
  const now = new Date();
  const withV2 = createTestMerchant({ mchid: "1900000561" });
  const withCertificate = createTestMerchant({ mchid: "1900000562" });
  const certificate = platformCertificate(withCertificate.platformPrivateKey);

  it("a public key whose new PEM does not load keeps the key loaded before, whatever else the row holds", async () => {
    const rows = [rowOf(withV2), rowOf(withCertificate, { apiV2Key: null, certificates: [certificate] })];
    const logs: Record<string, unknown>[] = [];
    const registry = registryOver(rows, logs);
    await registry.reload();
    rows[0] = { ...rowOf(withV2), publicKeyPem: TRUNCATED_PUBLIC_KEY };
    rows[1] = {
      ...rowOf(withCertificate, { apiV2Key: null, certificates: [certificate] }),
      publicKeyPem: TRUNCATED_PUBLIC_KEY,
    };
    await registry.reload();
    // Before: the row with an APIv2 key lost its only APIv3 key (every v3 notification 401 SERIAL_UNKNOWN), the
    // row with a certificate lost its public key (WeChat's switch period: PUB_KEY_ID_ notifications refused).
    expect(keyIdsOf(registry, withV2.mchid)).toEqual([withV2.publicKeyId]);
    expect(registry.get(withV2.mchid)?.keys.resolve(withV2.publicKeyId, now).equals(withV2.platformPublicKey)).toBe(
      true,
    );
    expect(registry.get(withV2.mchid)?.apiV2Key).toBe(withV2.apiV2Key);
    expect(keyIdsOf(registry, withCertificate.mchid)).toEqual([withCertificate.publicKeyId, certificate.serial]);
    expect(logs.filter((line) => line.code === "MERCHANT_KEY_UNUSABLE")).toMatchObject([
      { level: 50, mchid: withV2.mchid, key: withV2.publicKeyId, kept: [withV2.publicKeyId] },
      {
        level: 50,
        mchid: withCertificate.mchid,
        key: withCertificate.publicKeyId,
        kept: [withCertificate.publicKeyId],
      },
    ]);
    expect(registry.keptKeys).toBe(2);
    // The unchanged broken row is not rebuilt: the key stays kept, logged once.
    await registry.reload();
    expect(keyIdsOf(registry, withV2.mchid)).toEqual([withV2.publicKeyId]);
    expect(registry.keptKeys).toBe(2);
  });

  it("a public-key id with whitespace around it does not load (MERCHANT_KEY_UNUSABLE): never a key that cannot match", async () => {
    const fresh = createTestMerchant({ mchid: "1900000563" });
    const rows = [rowOf(withV2), rowOf(fresh, { publicKeyId: `${fresh.publicKeyId}\n` })];
    const logs: Record<string, unknown>[] = [];
    const registry = registryOver(rows, logs);
    await registry.reload();
    // A new row: the key is left out (its APIv2 key still serves), logged with the id as given.
    expect(keyIdsOf(registry, fresh.mchid)).toEqual([]);
    // An edit of a row that loaded: the key loaded before is kept.
    rows[0] = rowOf(withV2, { publicKeyId: `${withV2.publicKeyId} ` });
    await registry.reload();
    expect(keyIdsOf(registry, withV2.mchid)).toEqual([withV2.publicKeyId]);
    expect(logs.filter((line) => line.code === "MERCHANT_KEY_UNUSABLE")).toMatchObject([
      { level: 50, mchid: fresh.mchid, key: `${fresh.publicKeyId}\n`, kept: [] },
      { level: 50, mchid: withV2.mchid, key: `${withV2.publicKeyId} `, kept: [withV2.publicKeyId] },
    ]);
  });

  it("a certificate row whose new PEM does not load keeps the certificate loaded before", async () => {
    const rows = [rowOf(withCertificate, { certificates: [certificate] })];
    const registry = registryOver(rows);
    await registry.reload();
    rows[0] = rowOf(withCertificate, { certificates: [{ serial: certificate.serial, pem: UNUSABLE_CERTIFICATE.pem }] });
    await registry.reload();
    expect(keyIdsOf(registry, withCertificate.mchid)).toEqual([withCertificate.publicKeyId, certificate.serial]);
    expect(registry.keptKeys).toBe(1);
  });

  it("a fixed row replaces the kept key; cleared columns and a deleted certificate row remove theirs", async () => {
    const replacement = createTestMerchant({ mchid: withV2.mchid });
    const rows = [rowOf(withV2, { certificates: [certificate] })];
    const registry = registryOver(rows);
    await registry.reload();
    rows[0] = { ...rowOf(withV2, { certificates: [certificate] }), publicKeyPem: TRUNCATED_PUBLIC_KEY };
    await registry.reload();
    expect(registry.keptKeys).toBe(1);
    rows[0] = rowOf(replacement, { certificates: [certificate] });
    await registry.reload();
    expect(keyIdsOf(registry, withV2.mchid)).toEqual([replacement.publicKeyId, certificate.serial]);
    expect(registry.keptKeys).toBe(0);
    rows[0] = rowOf(replacement, { publicKeyId: null, publicKeyPem: null, certificates: [certificate] });
    await registry.reload();
    expect(keyIdsOf(registry, withV2.mchid)).toEqual([certificate.serial]);
    rows[0] = rowOf(replacement, { publicKeyId: null, publicKeyPem: null });
    await registry.reload();
    expect(keyIdsOf(registry, withV2.mchid)).toEqual([]);
    expect(registry.get(withV2.mchid)?.apiV2Key).toBe(replacement.apiV2Key);
    expect(registry.keptKeys).toBe(0);
    // Its last key too: a row with no key at all is refused as a whole, and the merchant keeps what it had.
    rows[0] = rowOf(replacement, { publicKeyId: null, publicKeyPem: null, apiV2Key: null });
    await registry.reload();
    expect(registry.get(withV2.mchid)?.apiV2Key).toBe(replacement.apiV2Key);
    expect(registry.keptKeys).toBe(1);
  });

  it("an edited row keeps the key objects of its unchanged keys (verify threads keep every key object they are sent)", async () => {
    const merchant = createTestMerchant({ mchid: "1900000563" });
    const row = rowOf(merchant);
    const cert = platformCertificate(merchant.platformPrivateKey);
    const rows = [{ ...row, certificates: [cert] }];
    const registry = registryOver(rows);
    await registry.reload();
    const before = registry.get(merchant.mchid)?.keys;
    // An edit of another column (here the APIv2 key) rebuilds the merchant; its public key and certificate are as
    // they were, so RsaVerifyPool's threads must not be handed new copies of them.
    rows[0] = { ...row, certificates: [cert], apiV2Key: "k".repeat(32) };
    await registry.reload();
    const after = registry.get(merchant.mchid)?.keys;
    expect(after).not.toBe(before);
    expect(after?.publicKey(merchant.publicKeyId)).toBe(before?.publicKey(merchant.publicKeyId));
    expect(after?.certificate(cert.serial)?.publicKey).toBe(before?.certificate(cert.serial)?.publicKey);
    // A key that did change is the new one.
    const other = createTestMerchant();
    rows[0] = { ...rows[0], publicKeyPem: readFileSync(other.publicKeyPath, "utf8") };
    await registry.reload();
    expect(registry.get(merchant.mchid)?.keys.publicKey(merchant.publicKeyId)?.equals(other.platformPublicKey)).toBe(
      true,
    );
  });

  it("a certificate row whose serial column is not its PEM's serial is refused (CERTIFICATE_SERIAL_MISMATCH), naming both; the merchant's other keys stay", async () => {
    const merchant = createTestMerchant({ mchid: "1900000564" });
    const good = platformCertificate(merchant.platformPrivateKey);
    const misfiled = platformCertificate(merchant.platformPrivateKey);
    // The column names another certificate (say the one the operator meant to paste).
    const column = platformCertificate(createTestMerchant().platformPrivateKey).serial;
    const logs: Record<string, unknown>[] = [];
    const rows = [rowOf(merchant, { certificates: [good, { serial: column, pem: misfiled.pem }] })];
    const registry = registryOver(rows, logs);
    await registry.reload();
    expect(keyIdsOf(registry, merchant.mchid)).toEqual([merchant.publicKeyId, good.serial]);
    expect(logs).toContainEqual(
      expect.objectContaining({
        code: "CERTIFICATE_SERIAL_MISMATCH",
        mchid: merchant.mchid,
        serial: column,
        pemSerial: misfiled.serial,
      }),
    );
    expect(registry.refusals).toEqual({ CERTIFICATE_SERIAL_MISMATCH: 1 });
    // The same number in another spelling (lower case, leading zeros) is the same serial.
    rows[0] = rowOf(merchant, {
      certificates: [good, { serial: `00${misfiled.serial.toLowerCase()}`, pem: misfiled.pem }],
    });
    await registry.reload();
    expect(keyIdsOf(registry, merchant.mchid)).toEqual([merchant.publicKeyId, good.serial, misfiled.serial]);
    expect(registry.refusals).toEqual({});
    // A row that verified and is then edited to hold another certificate keeps the one loaded before (kept key).
    rows[0] = rowOf(merchant, { certificates: [good, { serial: misfiled.serial, pem: good.pem }] });
    await registry.reload();
    expect(keyIdsOf(registry, merchant.mchid)).toEqual([merchant.publicKeyId, good.serial, misfiled.serial]);
    expect(registry.get(merchant.mchid)?.keys.certificate(misfiled.serial)?.pem).toBe(
      loadCertificate(misfiled.pem).pem,
    );
    expect(registry.keptKeys).toBe(1);
    expect(registry.refusals).toEqual({ CERTIFICATE_SERIAL_MISMATCH: 1 });
  });

  it("a public key with only one of its two columns is logged; the key loaded before stays", async () => {
    const newcomer = createTestMerchant({ mchid: "1900000563" });
    const rows = [rowOf(withV2), rowOf(newcomer, { publicKeyPem: null })];
    const logs: Record<string, unknown>[] = [];
    const registry = registryOver(rows, logs);
    await registry.reload();
    expect(keyIdsOf(registry, newcomer.mchid)).toEqual([]);
    rows[0] = rowOf(withV2, { publicKeyId: null });
    await registry.reload();
    expect(keyIdsOf(registry, withV2.mchid)).toEqual([withV2.publicKeyId]);
    expect(logs.filter((line) => line.code === "MERCHANT_KEY_INCOMPLETE")).toMatchObject([
      { level: 50, mchid: newcomer.mchid, missing: "publicKeyPem", kept: [] },
      { level: 50, mchid: withV2.mchid, missing: "publicKeyId", kept: [withV2.publicKeyId] },
    ]);
    expect(registry.keptKeys).toBe(1);
  });
});

describe("merchant registry: a row's mchid", () => {
  const good = createTestMerchant({ mchid: "1900000571" });
  const other = createTestMerchant({ mchid: "1900000572" });

  it("a row whose mchid is not 6–32 digits is not served, logged MERCHANT_MCHID_INVALID at every reload", async () => {
    // The mchid is part of every notification id: a 90-character one made `v3:<mchid>:<WeChat's 36-character id>`
    // 130 characters, over the 128 the workers accept — answered 204, then dead-lettered JOB_INVALID (and again on
    // replay). Whitespace pasted along would never be a merchant WeChat notifies either.
    const invalid = [
      "1".repeat(90),
      "1".repeat(33),
      "12345",
      "1900000573\n",
      " 1900000574",
      "19000005x5",
      "１９００００",
    ];
    const rows = [rowOf(good), ...invalid.map((mchid) => rowOf(other, { mchid }))];
    const logs: Record<string, unknown>[] = [];
    const registry = registryOver(rows, logs);
    await registry.reload();
    expect(registry.get(good.mchid)).toBeDefined();
    for (const mchid of invalid) {
      expect(registry.get(mchid), JSON.stringify(mchid)).toBeUndefined();
      expect(await registry.lookup(mchid), JSON.stringify(mchid)).toBe("unknown");
    }
    expect(registry.size).toBe(2);
    const logged = () => logs.filter((line) => line.code === "MERCHANT_MCHID_INVALID");
    expect(logged()).toMatchObject(invalid.map((mchid) => ({ level: 50, mchid })));
    // Until the row is fixed: every reload logs it again, and the fixed row is served.
    rows[1] = rowOf(other, { mchid: "1".repeat(32) });
    await registry.reload();
    expect(logged()).toHaveLength(2 * invalid.length - 1);
    expect(keyIdsOf(registry, "1".repeat(32))).toEqual([other.publicKeyId]);
  });
});

describe("merchant registry: a table that cannot be read", () => {
  const tenant = createTestMerchant({ mchid: "1900000581" });
  const added = createTestMerchant({ mchid: "1900000582" });

  /** A registry over `rows` whose reads fail while `table.down`, each counted in `table.reads`. */
  function registryOverTable(rows: MerchantRecord[], options: { refreshIntervalMs?: number } = {}) {
    const table = { down: false, reads: 0 };
    const registry = new MerchantRegistry({
      defaultMerchant: defaultMerchantFromConfig(loadConfig(createTestMerchant().env)),
      source: {
        load: async () => {
          table.reads++;
          if (table.down) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
          return [...rows];
        },
      },
      logger: pino({ level: "silent" }),
      ...options,
    });
    return { registry, table };
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  it("a failed first load is tried again after 1 s, doubling up to the reload interval; once loaded, every interval", async () => {
    vi.useFakeTimers();
    const { registry, table } = registryOverTable([rowOf(tenant)], { refreshIntervalMs: 10_000 });
    table.down = true;
    await registry.start();
    try {
      const readsAt = async (ms: number) => {
        await vi.advanceTimersByTimeAsync(ms);
        return table.reads;
      };
      // Before: the next try was the 30 s reload (the table's merchants 404 meanwhile).
      expect(await readsAt(999)).toBe(1);
      expect(await readsAt(1)).toBe(2);
      expect(registry.tableLoaded).toBe(false);
      expect(await readsAt(2_000)).toBe(3);
      expect(await readsAt(4_000)).toBe(4);
      expect(await readsAt(8_000)).toBe(5);
      // Capped at the reload interval (16 s would be next).
      expect(await readsAt(10_000)).toBe(6);
      table.down = false;
      expect(await readsAt(10_000)).toBe(7);
      expect(registry.tableLoaded).toBe(true);
      expect(registry.get(tenant.mchid)).toBeDefined();
      expect(await readsAt(9_999)).toBe(7);
      expect(await readsAt(1)).toBe(8);
      // Later failures keep the merchants and the interval.
      table.down = true;
      expect(await readsAt(10_000)).toBe(9);
      expect(await readsAt(1_000)).toBe(9);
      expect(registry.tableLoaded).toBe(true);
    } finally {
      registry.stop();
    }
    // Stopped: no more reads.
    await vi.advanceTimersByTimeAsync(60_000);
    expect(table.reads).toBe(9);
  });

  it("lookup: unavailable until the table was read, and while its last read failed; unknown only when it was read", async () => {
    const rows = [rowOf(tenant)];
    const { registry, table } = registryOverTable(rows);
    table.down = true;
    await registry.reload();
    expect(await registry.lookup(tenant.mchid)).toBe("unavailable");
    // A malformed mchid is never a merchant, table or not.
    expect(await registry.lookup("19000005x1")).toBe("unknown");
    // The environment's merchant needs no table.
    expect(await registry.lookup(registry.defaultMerchant.mchid)).toBe(registry.defaultMerchant);

    table.down = false;
    await registry.reload();
    expect(await registry.lookup(tenant.mchid)).toMatchObject({ mchid: tenant.mchid });
    // Read, and no such row: unknown.
    expect(await registry.lookup(added.mchid)).toBe("unknown");
    table.down = true;
    rows.push(rowOf(added));
    await registry.reload();
    // The last read failed: a merchant not in memory may have been added since.
    expect(await registry.lookup(added.mchid)).toBe("unavailable");
    expect(await registry.lookup(tenant.mchid)).toMatchObject({ mchid: tenant.mchid });
    table.down = false;
    await registry.reload();
    expect(await registry.lookup(added.mchid)).toMatchObject({ mchid: added.mchid });
  });

  it("lookup: a table that does not answer within the lookup's wait is unavailable, not unknown", async () => {
    let hang = false;
    const registry = new MerchantRegistry({
      defaultMerchant: defaultMerchantFromConfig(loadConfig(createTestMerchant().env)),
      source: { load: () => (hang ? new Promise<never>(() => undefined) : Promise.resolve([rowOf(tenant)])) },
      lookupTimeoutMs: 50,
      logger: pino({ level: "silent" }),
    });
    await registry.reload();
    hang = true;
    expect(await registry.lookup(added.mchid)).toBe("unavailable");
  });
});
