import { sign, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { envSchema } from "@wpn/config";
import { testRsaKeyPair } from "@wpn/testing";
import { buildV3Message, isWechatPayError, KeyStore, loadCertificate, verifyV3 } from "@wpn/wechatpay";
import { afterAll, describe, expect, it } from "vitest";
import { generateSimKeys, INGRESS_ENV_NAMES, KEY_FILES, loadSimKeys, parseEnvFile, SimKeysError } from "../src/keys.ts";
import { runSim } from "./support/cli.ts";

const root = mkdtempSync(join(tmpdir(), "wpn-sim-keys-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("generateSimKeys", () => {
  const dir = join(root, "a");
  const keys = generateSimKeys(dir, { mchid: "1230000109", appid: "wxtestappid" });

  it("writes a self-signed platform certificate whose serial is the one in DIR/env", () => {
    const env = parseEnvFile(readFileSync(join(dir, KEY_FILES.env), "utf8"));
    const x509 = new X509Certificate(readFileSync(join(dir, KEY_FILES.certificate)));
    expect(x509.serialNumber.toUpperCase()).toBe(keys.certificateSerial);
    expect(env.WECHATPAY_SIM_PLATFORM_CERT_SERIAL).toBe(keys.certificateSerial);
    expect(keys.certificateSerial).toMatch(/^[1-7][0-9A-F]{39}$/);
    expect(x509.issuer).toBe(x509.subject);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(new Date(x509.validTo).getTime()).toBeGreaterThan(Date.now() + 4 * 365 * 24 * 3600 * 1000);
  });

  it("is accepted by loadCertificate and KeyStore, which then verify what the simulator's keys sign", () => {
    const loaded = loadCertificate(readFileSync(keys.certificatePath, "utf8"));
    expect(loaded.serial).toBe(keys.certificateSerial);
    const store = new KeyStore();
    expect(store.addCertificate(keys.certificatePem)).toBe(keys.certificateSerial);
    store.addPublicKey(keys.publicKeyId, readFileSync(keys.publicKeyPath, "utf8"));
    const body = Buffer.from('{"x":1}');
    const ts = String(Math.floor(Date.now() / 1000));
    for (const [serial, key] of [
      [keys.certificateSerial, keys.certificatePrivateKey],
      [keys.publicKeyId, keys.publicKeyPrivateKey],
    ] as const) {
      const signature = sign("sha256", buildV3Message(ts, "n", body), key).toString("base64");
      expect(() =>
        verifyV3({ timestamp: ts, nonce: "n", signature, serial, signatureType: "WECHATPAY2-SHA256-RSA2048" }, body, {
          keys: store,
        }),
      ).not.toThrow();
    }
    // Two different key pairs: a certificate signature does not verify under the public key id.
    const crossed = sign("sha256", buildV3Message(ts, "n", body), keys.certificatePrivateKey).toString("base64");
    try {
      verifyV3(
        {
          timestamp: ts,
          nonce: "n",
          signature: crossed,
          serial: keys.publicKeyId,
          signatureType: "WECHATPAY2-SHA256-RSA2048",
        },
        body,
        {
          keys: store,
        },
      );
      expect.unreachable("crossed key must not verify");
    } catch (err) {
      expect(isWechatPayError(err) && err.code).toBe("SIGNATURE_INVALID");
    }
  });

  it("writes the ingress environment that @wpn/config accepts, with absolute paths", () => {
    const env = parseEnvFile(readFileSync(join(dir, KEY_FILES.env), "utf8"));
    for (const name of INGRESS_ENV_NAMES) expect(env[name], name).toBe(keys.env[name]);
    expect(keys.env.WECHATPAY_MCHID).toBe("1230000109");
    expect(keys.env.WECHATPAY_APPID).toBe("wxtestappid");
    expect(keys.env.WECHATPAY_PUBLIC_KEY_ID).toMatch(/^PUB_KEY_ID_\d{34}$/);
    expect(keys.env.WECHATPAY_APIV3_KEY).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(keys.env.WECHATPAY_APIV2_KEY).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(keys.env.WECHATPAY_APIV3_KEY).not.toBe(keys.env.WECHATPAY_APIV2_KEY);
    expect(existsSync(keys.env.WECHATPAY_PUBLIC_KEY_PATH)).toBe(true);
    expect(keys.env.WECHATPAY_PLATFORM_CERT_PATHS).toBe(join(dir, KEY_FILES.certificate));
    const parsed = envSchema.safeParse(env);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
  });

  it("keeps private keys private (mode 0600)", () => {
    expect(statSync(join(dir, KEY_FILES.publicKeyPrivate)).mode & 0o077).toBe(0);
    expect(statSync(join(dir, KEY_FILES.certificatePrivate)).mode & 0o077).toBe(0);
  });

  it("loads back what it wrote and notices a private key that does not belong", () => {
    const again = loadSimKeys(dir);
    expect(again.publicKeyId).toBe(keys.publicKeyId);
    expect(again.apiV3Key).toBe(keys.apiV3Key);
    const keyPairs = { publicKey: testRsaKeyPair(), certificate: testRsaKeyPair() };
    const other = generateSimKeys(join(root, "b"), { keyPairs });
    writeFileSync(join(dir, KEY_FILES.certificatePrivate), readFileSync(join(other.dir, KEY_FILES.certificatePrivate)));
    expect(() => loadSimKeys(dir)).toThrow(SimKeysError);
    expect(() => loadSimKeys(join(root, "missing"))).toThrow(/no env file/);
  });

  it("refuses a malformed mchid", () => {
    expect(() => generateSimKeys(join(root, "c"), { mchid: "12ab" })).toThrow(/mchid/);
  });
});

describe("wechatpay-sim keys", () => {
  it("prints the environment, writes DIR/env, and refuses to overwrite without --force", async () => {
    const out = join(root, "cli");
    const first = await runSim(["keys", "--out", out]);
    expect(first.code).toBe(0);
    const printed = parseEnvFile(first.stdout);
    expect(Object.keys(printed).sort()).toEqual([...INGRESS_ENV_NAMES].sort());
    expect(printed.WECHATPAY_PUBLIC_KEY_ID).toBe(loadSimKeys(out).publicKeyId);

    const second = await runSim(["keys", "--out", out]);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain("--force");

    const forced = await runSim(["keys", "--out", out, "--force", "--json"]);
    expect(forced.code).toBe(0);
    const json = JSON.parse(forced.stdout) as { env: Record<string, string>; certificateSerial: string };
    expect(json.env.WECHATPAY_PUBLIC_KEY_ID).not.toBe(printed.WECHATPAY_PUBLIC_KEY_ID);
    expect(json.certificateSerial).toBe(loadSimKeys(out).certificateSerial);
  });

  it("names the flag that is wrong", async () => {
    const r = await runSim(["keys", "--out", join(root, "d"), "--mchid", "abc"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--mchid");
  });
});
