import { WorkerError } from "../errors.ts";

/**
 * How often a STALE answer (the order changed between the statement's snapshot and its row lock, i.e. a
 * concurrent notification for the same order committed just before) is retried on the spot. One retry
 * almost always suffices; a persistently contended order falls back to the queue's backoff.
 */
const STALE_RETRIES = 5;

/**
 * Runs one apply statement (payment or refund) until it answers something other than STALE, and turns the
 * outcomes that mean "not now" into WorkerErrors: ORDER_NOT_FOUND (retried within the unknown-order
 * window), NOTIFICATION_NOT_FOUND (permanent), ORDER_CONTENDED (retried by the queue), plus whatever
 * `reject` maps for the statement's own outcomes.
 */
export async function runApplyStatement<R extends { outcome: string }>(
  run: () => Promise<R>,
  facts: { outTradeNo: string; notificationId: string },
  reject: (result: R) => WorkerError | undefined = () => undefined,
): Promise<R> {
  for (let attempt = 0; attempt < STALE_RETRIES; attempt++) {
    const result = await run();
    if (result.outcome === "STALE") continue;
    if (result.outcome === "ORDER_NOT_FOUND") {
      throw WorkerError.of("ORDER_NOT_FOUND", `no order with out_trade_no ${facts.outTradeNo}`);
    }
    if (result.outcome === "NOTIFICATION_NOT_FOUND") {
      // The parse stage writes the row before it enqueues the apply job: a row missing now was deleted — by hand, or
      // pruned once settled by a release whose prune did not list the waiting letters, or by one given another
      // deployment's Redis (pruneNotifications keeps a row any letter in notify.dead names). Every replay would end
      // here again, so the message, which the letter keeps, says what the operator can do instead.
      throw WorkerError.of(
        "NOTIFICATION_NOT_FOUND",
        `notification ${facts.notificationId} has no row: \`db:prune\` may have deleted it once settled, before this ` +
          'job ran; replaying it again cannot help (worker README, "Replay"). ' +
          `Order ${facts.outTradeNo} shows what was applied; the event this job would have published may never have ` +
          "been: check that the merchant's systems know of this payment or refund",
      );
    }
    const error = reject(result);
    if (error) throw error;
    return result;
  }
  throw WorkerError.of(
    "ORDER_CONTENDED",
    `order ${facts.outTradeNo} changed under ${STALE_RETRIES} consecutive attempts`,
  );
}
