import type { PrismaClient } from "@wpn/db";
import type { MerchantRecord, MerchantSource } from "./registry.ts";

/** Enabled `Merchant` rows with their `PlatformCertificate`s; one query per reload, never per request. */
export function prismaMerchantSource(prisma: PrismaClient): MerchantSource {
  return {
    async load(): Promise<MerchantRecord[]> {
      const rows = await prisma.merchant.findMany({
        where: { enabled: true },
        select: {
          mchid: true,
          appid: true,
          apiV2Key: true,
          publicKeyId: true,
          publicKeyPem: true,
          certificates: { select: { serial: true, pem: true } },
        },
      });
      return rows;
    },
  };
}
