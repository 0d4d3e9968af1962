import type { Config } from "@wpn/config";
import { findMerchantKeys, type PrismaClient } from "@wpn/db";
import { WorkerError } from "./errors.ts";

/** Decryption keys of one merchant. */
export interface MerchantKeySet {
  mchid: string;
  /** The APIv3 key as the 32 bytes AES-256-GCM uses. */
  apiV3Key: Buffer;
  /** The APIv3 key before a rotation (tried when the current one does not open a notification), or null. */
  previousApiV3Key: Buffer | null;
  /** The APIv2 key (32 characters); null when the merchant has none. */
  apiV2Key: string | null;
  /** The APIv2 key before a rotation (tried when the current one does not open a refund's req_info), or null. */
  previousApiV2Key: string | null;
}

export interface KeyResolver {
  /** Keys of `mchid`; throws WorkerError MERCHANT_UNKNOWN. */
  resolve(mchid: string): Promise<MerchantKeySet>;
  /**
   * Keys of `mchid` read again from their source, bypassing any cache; null when they cannot have changed (the
   * configured merchant). For a notification the cached keys did not open: the key may have been rotated since.
   */
  reload(mchid: string): Promise<MerchantKeySet | null>;
}

/**
 * The default merchant's keys come from configuration; other merchants' from the `Merchant` table, cached
 * for `ttlMs` so a busy worker does not read the table per job. A key rotated in the table meanwhile is found
 * by `reload`, which the stages call when the cached keys do not open a notification.
 */
export class MerchantKeyResolver implements KeyResolver {
  readonly #default: MerchantKeySet;
  readonly #cache = new Map<string, { keys: MerchantKeySet; expires: number }>();

  constructor(
    config: Pick<
      Config,
      | "WECHATPAY_MCHID"
      | "apiV3KeyBytes"
      | "previousApiV3KeyBytes"
      | "WECHATPAY_APIV2_KEY"
      | "WECHATPAY_APIV2_KEY_PREVIOUS"
    >,
    private readonly prisma: PrismaClient,
    private readonly ttlMs = 60_000,
  ) {
    this.#default = {
      mchid: config.WECHATPAY_MCHID,
      apiV3Key: config.apiV3KeyBytes,
      previousApiV3Key: config.previousApiV3KeyBytes ?? null,
      apiV2Key: config.WECHATPAY_APIV2_KEY ?? null,
      previousApiV2Key: config.WECHATPAY_APIV2_KEY_PREVIOUS ?? null,
    };
  }

  async resolve(mchid: string): Promise<MerchantKeySet> {
    if (mchid === this.#default.mchid) return this.#default;
    const now = Date.now();
    const hit = this.#cache.get(mchid);
    if (hit && hit.expires > now) return hit.keys;
    return this.#read(mchid, now);
  }

  async reload(mchid: string): Promise<MerchantKeySet | null> {
    if (mchid === this.#default.mchid) return null;
    return this.#read(mchid, Date.now());
  }

  async #read(mchid: string, now: number): Promise<MerchantKeySet> {
    const row = await findMerchantKeys(this.prisma, mchid);
    if (!row)
      throw WorkerError.of(
        "MERCHANT_UNKNOWN",
        `merchant ${mchid} is neither the configured one nor an enabled Merchant row`,
      );
    const keys = {
      mchid,
      apiV3Key: Buffer.from(row.apiV3Key, "utf8"),
      previousApiV3Key: row.apiV3KeyPrevious === null ? null : Buffer.from(row.apiV3KeyPrevious, "utf8"),
      apiV2Key: row.apiV2Key,
      previousApiV2Key: row.apiV2KeyPrevious,
    };
    this.#cache.set(mchid, { keys, expires: now + this.ttlMs });
    return keys;
  }
}
