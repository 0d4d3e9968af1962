import type { PrismaClient } from "../generated/client.ts";

export interface MerchantKeys {
  mchid: string;
  appid: string;
  /** 32 ASCII characters. */
  apiV3Key: string;
  /** The key before a rotation, or null. */
  apiV3KeyPrevious: string | null;
  apiV2Key: string | null;
  /** The APIv2 key before a rotation, or null. */
  apiV2KeyPrevious: string | null;
}

/** Keys of an enabled merchant of the `Merchant` table, or null (unknown or disabled). */
export async function findMerchantKeys(prisma: PrismaClient, mchid: string): Promise<MerchantKeys | null> {
  const row = await prisma.merchant.findUnique({
    where: { mchid },
    select: {
      mchid: true,
      appid: true,
      apiV3Key: true,
      apiV3KeyPrevious: true,
      apiV2Key: true,
      apiV2KeyPrevious: true,
      enabled: true,
    },
  });
  if (!row?.enabled) return null;
  return {
    mchid: row.mchid,
    appid: row.appid,
    apiV3Key: row.apiV3Key,
    apiV3KeyPrevious: row.apiV3KeyPrevious,
    apiV2Key: row.apiV2Key,
    apiV2KeyPrevious: row.apiV2KeyPrevious,
  };
}
