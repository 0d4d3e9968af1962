import { readFileSync } from "node:fs";
import type { PrismaClient } from "@wpn/db";
import type { TestMerchant } from "@wpn/testing";

/** `m` as a row of the Merchant table (the tenants the /notify/*\/:mchid routes serve), with its public key. */
export async function insertMerchant(prisma: PrismaClient, m: TestMerchant): Promise<void> {
  await prisma.merchant.create({
    data: {
      mchid: m.mchid,
      appid: m.appid,
      apiV3Key: m.apiV3Key,
      apiV2Key: m.apiV2Key,
      publicKeyId: m.publicKeyId,
      publicKeyPem: readFileSync(m.publicKeyPath, "utf8"),
    },
  });
}

/**
 * `m` as a row of the Merchant table that verifies with a PlatformCertificate row (`cert`, valid from `notBefore` to
 * `notAfter`), and with its public key too when `publicKey` is set; no APIv2 key.
 */
export async function insertCertificateMerchant(
  prisma: PrismaClient,
  m: TestMerchant,
  cert: { serial: string; pem: string },
  validity: { notBefore: Date; notAfter: Date },
  { publicKey = false }: { publicKey?: boolean } = {},
): Promise<void> {
  await prisma.merchant.create({
    data: {
      mchid: m.mchid,
      appid: m.appid,
      apiV3Key: m.apiV3Key,
      ...(publicKey ? { publicKeyId: m.publicKeyId, publicKeyPem: readFileSync(m.publicKeyPath, "utf8") } : {}),
      certificates: { create: { serial: cert.serial, pem: cert.pem, ...validity } },
    },
  });
}
