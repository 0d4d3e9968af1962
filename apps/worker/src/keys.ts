import type { Config } from "@wpn/config";
import { findMerchantKeys, type PrismaClient } from "@wpn/db";
import { WorkerError } from "./errors.ts";

/** Decryption keys of one merchant. */
export interface MerchantKeySet {
  mchid: string;
  /** The APIv3 key as the 32 bytes AES-256-GCM uses. */
  apiV3Key: Buffer;
  /** The APIv2 key (32 characters); null when the merchant has none. */
  apiV2Key: string | null;
}

export interface KeyResolver {
  /** Keys of `mchid`; throws WorkerError MERCHANT_UNKNOWN. */
  resolve(mchid: string): Promise<MerchantKeySet>;
}

/**
 * The default merchant's keys come from configuration; other merchants' from the `Merchant` table, cached
 * for `ttlMs` so a busy worker does not read the table per job (a key rotated in the table is picked up
 * within that time; a notification that failed to decrypt meanwhile can be replayed).
 */
export class MerchantKeyResolver implements KeyResolver {
  readonly #default: MerchantKeySet;
  readonly #cache = new Map<string, { keys: MerchantKeySet; expires: number }>();

  constructor(
    config: Pick<Config, "WECHATPAY_MCHID" | "apiV3KeyBytes" | "WECHATPAY_APIV2_KEY">,
    private readonly prisma: PrismaClient,
    private readonly ttlMs = 60_000,
  ) {
    this.#default = {
      mchid: config.WECHATPAY_MCHID,
      apiV3Key: config.apiV3KeyBytes,
      apiV2Key: config.WECHATPAY_APIV2_KEY ?? null,
    };
  }

  async resolve(mchid: string): Promise<MerchantKeySet> {
    if (mchid === this.#default.mchid) return this.#default;
    const now = Date.now();
    const hit = this.#cache.get(mchid);
    if (hit && hit.expires > now) return hit.keys;
    const row = await findMerchantKeys(this.prisma, mchid);
    if (!row)
      throw WorkerError.of(
        "MERCHANT_UNKNOWN",
        `merchant ${mchid} is neither the configured one nor an enabled Merchant row`,
      );
    const keys = { mchid, apiV3Key: Buffer.from(row.apiV3Key, "utf8"), apiV2Key: row.apiV2Key };
    this.#cache.set(mchid, { keys, expires: now + this.ttlMs });
    return keys;
  }
}
