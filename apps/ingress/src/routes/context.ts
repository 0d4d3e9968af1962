import type { V3Headers, VerifyOptions } from "@wpn/wechatpay";
import type { Intake } from "../enqueue/intake.ts";
import type { MerchantRegistry } from "../merchants/registry.ts";
import type { IngressMetrics } from "../metrics.ts";
import type { IngressSettings } from "../settings.ts";

/** Everything a notify route needs, built once by `buildApp`. */
export interface NotifyContext {
  settings: IngressSettings;
  merchants: MerchantRegistry;
  intake: Intake;
  metrics: IngressMetrics;
  /** ms since the epoch; the verification time and `receivedAt`. */
  clock: () => number;
  /** The APIv3 signature check of the chosen VerifyMode; a promise only when it runs off the event loop. */
  verifyV3: V3Verifier;
  /** True once the app is closing: notifications still arriving on kept-alive sockets get SHUTTING_DOWN. */
  isClosing: () => boolean;
}

/** `verifyV3`'s contract: returns (or resolves) when the signature is good, throws a WechatPayError otherwise. */
export type V3Verifier = (headers: V3Headers, body: Buffer, opts: VerifyOptions) => void | Promise<void>;

/** Route params of `/notify/v3/:mchid` and `/notify/v2/:mchid`; absent on the default-merchant routes. */
export interface MerchantParams {
  mchid?: string;
}
