import { type KeyObject, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testRsaKeyPair } from "./rsa-keys.ts";

/**
 * A merchant with fresh key material — its RSA pair one of the run's shared ones (rsa-keys.ts), distinct from every
 * other pair the test file draws: what WeChat Pay holds (the private key it signs with) and what the merchant
 * configures (public key id + public key file, APIv3 and APIv2 keys).
 */
export interface TestMerchant {
  mchid: string;
  appid: string;
  apiV3Key: string;
  apiV2Key: string;
  publicKeyId: string;
  publicKeyPath: string;
  /** WeChat Pay's side: signs notifications. */
  platformPrivateKey: KeyObject;
  platformPublicKey: KeyObject;
  /** Environment for the system under test (merge DATABASE_URL, REDIS_URL, QUEUE_PREFIX, ports). */
  env: Record<string, string>;
}

const alphanumeric = (n: number) =>
  Array.from(randomBytes(n), (b) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[b % 62]).join("");

export function createTestMerchant(overrides: Partial<Pick<TestMerchant, "mchid" | "appid">> = {}): TestMerchant {
  const { privateKey, publicKey } = testRsaKeyPair();
  const dir = mkdtempSync(join(tmpdir(), "wpn-merchant-"));
  const publicKeyPath = join(dir, "wechatpay_public_key.pem");
  writeFileSync(publicKeyPath, publicKey.export({ type: "spki", format: "pem" }));
  const merchant = {
    mchid: overrides.mchid ?? "1900000109",
    appid: overrides.appid ?? "wxd678efh567hg6787",
    apiV3Key: alphanumeric(32),
    apiV2Key: alphanumeric(32),
    publicKeyId: `PUB_KEY_ID_0119${randomBytes(10).toString("hex").replace(/\D/g, "7").slice(0, 20)}`,
    publicKeyPath,
    platformPrivateKey: privateKey,
    platformPublicKey: publicKey,
  };
  return {
    ...merchant,
    env: {
      WECHATPAY_MCHID: merchant.mchid,
      WECHATPAY_APPID: merchant.appid,
      WECHATPAY_APIV3_KEY: merchant.apiV3Key,
      WECHATPAY_APIV2_KEY: merchant.apiV2Key,
      WECHATPAY_PUBLIC_KEY_ID: merchant.publicKeyId,
      WECHATPAY_PUBLIC_KEY_PATH: publicKeyPath,
    },
  };
}
