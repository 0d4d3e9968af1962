import type { RsaVerifyPool } from "@wpn/wechatpay";
import type { Intake } from "../enqueue/intake.ts";
import type { MerchantRegistry } from "../merchants/registry.ts";
import type { IngressMetrics } from "../metrics.ts";
import type { IngressSettings } from "../settings.ts";

/**
 * How APIv3 signatures are checked: on the event loop ("sync"), on the libuv thread pool ("async"), or batched
 * on worker threads ("threads", an `RsaVerifyPool`); see bench/ingress-report.md.
 */
export type VerifyMode = "sync" | "async" | "threads";

/** Everything a notify route needs, built once by `buildApp`. */
export interface NotifyContext {
  settings: IngressSettings;
  merchants: MerchantRegistry;
  intake: Intake;
  metrics: IngressMetrics;
  /** ms since the epoch; the verification time and `receivedAt`. */
  clock: () => number;
  verifyMode: VerifyMode;
  /** Present when verifyMode is "threads". */
  verifyPool?: RsaVerifyPool;
}

/** Route params of `/notify/v3/:mchid` and `/notify/v2/:mchid`; absent on the default-merchant routes. */
export interface MerchantParams {
  mchid?: string;
}
