import type { PaymentFacts, PaymentResult, RefundFacts, RefundResultRow } from "@wpn/db";
import { type ApplyJob, applyJobSchema, type PublishEvent, QueueName } from "@wpn/queue";
import { applyPayment, isPaymentReview } from "../domain/apply-payment.ts";
import { applyRefund, isRefundReview } from "../domain/apply-refund.ts";
import { paymentEvent, refundEvent } from "../domain/publish-events.ts";
import { WorkerError } from "../errors.ts";
import type { KeyResolver } from "../keys.ts";
import type { WorkerMetrics } from "../metrics.ts";
import { openWithMerchantKeys } from "./open.ts";
import { idField } from "./parse.processor.ts";
import type { StageContext, StageDefinition, StageResult } from "./stage.ts";

export interface ApplyDeps {
  /**
   * Applies one payment. In the worker: PaymentBatcher.apply over ApplyStore.payments (group commit: the
   * payments of concurrent jobs share one statement).
   */
  payment(facts: PaymentFacts): Promise<PaymentResult>;
  /** Applies one refund in a statement of its own: ApplyStore.refund (refunds are few). */
  refund(facts: RefundFacts): Promise<RefundResultRow>;
  keys: KeyResolver;
  /** REFUND_RESTOCK_POLICY=full. */
  restockOnFullRefund: boolean;
  /** Set when PUBLISH_EVENTS=true: enqueues the business event of a committed effect. */
  publish?: (event: PublishEvent) => Promise<void>;
  metrics?: WorkerMetrics;
}

export interface ApplyResult extends StageResult {
  orderStatus: string | null;
  reviewReason?: string | null;
}

/**
 * Apply stage: re-open the notification (the job carries it encrypted) and commit its effect in one
 * statement — order status, stock and movements, refund rows, the notification's status and timeline — then,
 * when enabled, publish the business event. A payment shares its statement with the payments of concurrent
 * jobs (`deps.payment`). Domain rules live in applyPayment / applyRefund.
 */
export async function handleApply(deps: ApplyDeps, job: ApplyJob, ctx: StageContext): Promise<ApplyResult> {
  const opened = await openWithMerchantKeys(deps.keys, job.mchid, {
    api: job.api,
    v2Kind: job.kind === "refund" ? "refund" : "pay",
    body: job.body,
  });
  // The keys the parse stage recorded on the row from the same bytes: its lines and letter carry them.
  ctx.setKeys(opened.keys);
  if (opened.kind !== job.kind) {
    throw WorkerError.of("PAYLOAD_INVALID", `apply job of kind ${job.kind} carries a ${opened.kind} notification`);
  }
  if (opened.kind === "payment") {
    const facts = { ...opened.payment, notificationId: job.notificationId };
    const result = await applyPayment(deps.payment, facts);
    report(deps, ctx, job, facts.subMchid, result, isPaymentReview(result.outcome), "PAYMENT");
    const event = paymentEvent(facts, result);
    if (deps.publish && event) await deps.publish(event);
    return { outcome: result.outcome, orderStatus: result.orderStatus, reviewReason: result.reviewReason };
  }
  const facts = { ...opened.refund, notificationId: job.notificationId, restockOnFullRefund: deps.restockOnFullRefund };
  const result = await applyRefund(deps.refund, facts, () => ctx.windowOver());
  report(deps, ctx, job, facts.subMchid, result, isRefundReview(result.outcome), "REFUND");
  const event = refundEvent(facts, result);
  if (deps.publish && event) await deps.publish(event);
  return { outcome: result.outcome, orderStatus: result.orderStatus };
}

/**
 * Metrics and the one log line per committed effect. Reviews are warnings: a human has to look — in partner mode with
 * the sub-merchant the notification names (`subMchid`), which WeChat's partner APIs need to query the transaction.
 */
function report(
  deps: ApplyDeps,
  ctx: StageContext,
  job: ApplyJob,
  subMchid: string | null,
  result: PaymentResult | RefundResultRow,
  review: boolean,
  movementReason: "PAYMENT" | "REFUND",
): void {
  const moved = "moved" in result ? result.moved : result.restocked;
  const fields = { outcome: result.outcome, orderStatus: result.orderStatus, movedSkus: moved };
  if (review) {
    deps.metrics?.reviews.inc({ reason: result.outcome });
    const partner = subMchid === null ? {} : { subMchid };
    ctx.log.warn({ ...fields, ...partner, code: result.outcome, reviewReason: result.reviewReason }, "needs review");
  } else {
    ctx.log.info(fields, "applied");
  }
  if (moved > 0) deps.metrics?.stockMovements.inc({ reason: movementReason }, moved);
  if (result.outcome !== "ALREADY") deps.metrics?.endToEnd.observe(Math.max(0, Date.now() - job.receivedAt) / 1000);
}

export function applyStage(deps: ApplyDeps): StageDefinition<ApplyJob, ApplyResult> {
  return {
    queue: QueueName.Apply,
    schema: applyJobSchema,
    notificationIdOf: (data) => idField(data, "notificationId"),
    outTradeNoOf: (payload) => payload.outTradeNo,
    handle: (payload, ctx) => handleApply(deps, payload, ctx),
  };
}
