import type { PrismaClient } from "@wpn/db";
import type { MerchantRecord, MerchantSource } from "./registry.ts";

/**
 * Enabled `Merchant` rows with their `PlatformCertificate`s; one query per reload, never per request. The APIv3 key
 * leaves the query only for rows that download their certificates (it decrypts them).
 */
export function prismaMerchantSource(prisma: PrismaClient): MerchantSource {
  return {
    async load(): Promise<MerchantRecord[]> {
      const rows = await prisma.merchant.findMany({
        where: { enabled: true },
        select: {
          mchid: true,
          appid: true,
          apiV2Key: true,
          apiV2KeyPrevious: true,
          publicKeyId: true,
          publicKeyPem: true,
          certificates: { select: { serial: true, pem: true, notBefore: true, notAfter: true } },
          apiSerialNo: true,
          apiPrivateKeyPem: true,
          apiV3Key: true,
          apiV3KeyPrevious: true,
        },
      });
      return rows.map(({ apiSerialNo, apiPrivateKeyPem, apiV3Key, apiV3KeyPrevious, ...row }) => ({
        ...row,
        download:
          apiSerialNo || apiPrivateKeyPem ? { apiSerialNo, apiPrivateKeyPem, apiV3Key, apiV3KeyPrevious } : null,
      }));
    },
  };
}
