import { IngressError } from "../errors.ts";
import type { MerchantKeys, MerchantRegistry } from "../merchants/registry.ts";

/**
 * The merchant of a `/:mchid` route that is not in memory, from the merchant table (`lookup`: at most one reload a
 * minute). Refused 404 MERCHANT_UNKNOWN only when the table, as read, has no such merchant; 503
 * MERCHANTS_UNAVAILABLE when it could not be read (PostgreSQL unreachable, at start or since): WeChat resends either
 * way, but a 404 there would tell operators — and the request metric — that a tenant does not exist.
 */
export async function lookupMerchant(merchants: MerchantRegistry, mchid: string): Promise<MerchantKeys> {
  const found = await merchants.lookup(mchid);
  if (found === "unavailable")
    throw new IngressError("MERCHANTS_UNAVAILABLE", `merchant table not read: ${mchid} may be a merchant`);
  if (found === "unknown") throw new IngressError("MERCHANT_UNKNOWN", `no merchant ${mchid}`);
  return found;
}
