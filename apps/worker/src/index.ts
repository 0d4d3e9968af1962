export { applyPayment, isPaymentReview } from "./domain/apply-payment.ts";
export { applyRefund, isRefundReview } from "./domain/apply-refund.ts";
export { type NotificationSource, type OpenedNotification, openNotification } from "./domain/notification.ts";
export { paymentEvent, refundEvent } from "./domain/publish-events.ts";
export { type ApplyStore, prismaApplyStore } from "./domain/store.ts";
export {
  isWorkerError,
  type RetryPolicy,
  toWorkerError,
  WORKER_ERROR_CODES,
  WorkerError,
  type WorkerErrorCode,
} from "./errors.ts";
export { type KeyResolver, MerchantKeyResolver, type MerchantKeySet } from "./keys.ts";
export { WorkerMetrics } from "./metrics.ts";
export { replayDeadLetter, replayDeps, type WorkerReplayDeps } from "./replay.ts";
export { checkWorkerConfig, type StartWorkerOptions, startWorker, type WorkerHandle } from "./worker.ts";
export { type ApplyDeps, type ApplyResult, applyStage, handleApply } from "./workers/apply.processor.ts";
export { handleParse, type ParseDeps, type ParseResult, parseStage } from "./workers/parse.processor.ts";
export { createStageProcessor, DeadLetteredError, type StageContext, type StageRuntime } from "./workers/stage.ts";
