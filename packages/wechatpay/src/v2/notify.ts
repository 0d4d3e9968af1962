import { type V2SignType, verifyV2 } from "./sign.ts";
import { parseV2Xml, type V2XmlLimits } from "./xml.ts";

export interface V2PaymentNotification {
  fields: Record<string, string>;
  /** Which algorithm the sign matched. */
  signType: V2SignType;
}

/**
 * Parses and verifies an APIv2 payment notification. Only the signature is checked here; the caller must
 * still look at `return_code` / `result_code` and compare `mch_id`, `appid`, `total_fee` with its order.
 */
export function openV2PaymentNotification(
  body: Buffer | string,
  apiV2Key: string,
  limits?: V2XmlLimits,
): V2PaymentNotification {
  const fields = parseV2Xml(body, limits);
  return { fields, signType: verifyV2(fields, apiV2Key) };
}
