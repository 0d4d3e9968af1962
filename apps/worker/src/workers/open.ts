import { isKeyMismatch } from "@wpn/wechatpay";
import { type NotificationSource, type OpenedNotification, openNotification } from "../domain/notification.ts";
import { isWorkerError, type WorkerError } from "../errors.ts";
import type { KeyResolver } from "../keys.ts";

/**
 * Opens a notification with its merchant's keys. When they do not decrypt it (or an APIv2 payment's sign does not
 * match them), once more with the keys read afresh: a merchant's row may have been rotated since its keys were cached (the new key, with the old one as
 * `apiV3KeyPrevious`), and a notification encrypted with the new key must not be dead-lettered for the cache's
 * sake. Likewise when they have no APIv2 key: one added to the row meanwhile is read by the ingress within 30 s,
 * which then answers WeChat SUCCESS (no resend). A merchant still without one is
 * APIV2_KEY_MISSING, retried within the window (errors.ts). Costs a database read only for a
 * notification that failed to open.
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
    if (!isKeyMismatch(error) && !isApiV2KeyMissing(error)) throw error;
    // null: the configured merchant, whose keys cannot change under a running process.
    const fresh = await resolver.reload(mchid);
    if (fresh === null) throw error;
    return openNotification(source, fresh);
  }
}

function isApiV2KeyMissing(error: unknown): error is WorkerError {
  return isWorkerError(error) && error.code === "APIV2_KEY_MISSING";
}
