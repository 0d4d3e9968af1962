import type { KeyObject } from "node:crypto";
import { testRsaKeyPair } from "@wpn/testing/rsa-keys";
import { createCertificatePem } from "./x509.ts";

export interface TestKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  privatePem: string;
  publicPem: string;
}

/**
 * An RSA-2048 key pair (WeChat's size; smaller keys are refused by the loaders), distinct from every other one the
 * test file draws: one of the run's shared pairs (@wpn/testing's rsa-keys.ts).
 */
export function rsaKeyPair(): TestKeyPair {
  const { privateKey, publicKey } = testRsaKeyPair();
  return {
    privateKey,
    publicKey,
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

export interface TestPlatformCert extends TestKeyPair {
  serial: string;
  pem: string;
}

const DAY_MS = 86_400_000;

/** A self-signed "platform certificate" with a private key we hold. Validity is relative to `at`. */
export function platformCert(
  serialHex: string,
  opts: { at?: Date; validFromDays?: number; validForDays?: number; keys?: TestKeyPair } = {},
): TestPlatformCert {
  const keys = opts.keys ?? rsaKeyPair();
  const at = (opts.at ?? new Date()).getTime();
  const notBefore = new Date(at + (opts.validFromDays ?? -1) * DAY_MS);
  const notAfter = new Date(notBefore.getTime() + (opts.validForDays ?? 5 * 365) * DAY_MS);
  const pem = createCertificatePem({
    serialHex,
    publicKey: keys.publicKey,
    issuerPrivateKey: keys.privateKey,
    notBefore,
    notAfter,
  });
  return { ...keys, serial: serialHex.toUpperCase(), pem };
}

/** 32 ASCII characters, like a real APIv3 key. */
export const TEST_APIV3_KEY = Buffer.from("0123456789abcdefghijklmnopqrstuv", "ascii");

/** Throws unless `fn` throws a WechatPayError with `code`; returns the error for further checks. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

export async function asyncCodeOf(fn: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}
