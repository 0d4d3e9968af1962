import { isKeyMismatch } from "@wpn/wechatpay";
import { type NotificationSource, type OpenedNotification, openNotification } from "../domain/notification.ts";
import type { KeyResolver } from "../keys.ts";

/**
 * Opens a notification with its merchant's keys. When they do not decrypt it (or an APIv2 payment's sign does not
 * match them), once more with the keys read afresh: a merchant's row may have been rotated since its keys were cached (the new key, with the old one as
 * `apiV3KeyPrevious`), and a notification encrypted with the new key must not be dead-lettered for the cache's
 * sake. Costs a database read only for a notification that failed to decrypt.
 */
export async function openWithMerchantKeys(
  resolver: KeyResolver,
  mchid: string,
  source: NotificationSource,
): Promise<OpenedNotification> {
  const keys = await resolver.resolve(mchid);
  try {
    return openNotification(source, keys);
  } catch (error) {
    if (!isKeyMismatch(error)) throw error;
    const fresh = await resolver.reload(mchid);
    if (fresh === null) throw error;
    return openNotification(source, fresh);
  }
}
