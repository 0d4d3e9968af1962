import type { Config } from "@wpn/config";

/** The part of `Config` the ingress reads, with units in the names. Derived, never parsed from env here. */
export interface IngressSettings {
  queuePrefix: string;
  bodyLimitBytes: number;
  enqueueTimeoutMs: number;
  dedupeTtlSeconds: number;
  queueWaitingCeiling: number;
  timestampToleranceSeconds: number;
  /** 0: verify APIv3 signatures on the event loop; n: on n worker threads (RsaVerifyPool). */
  verifyThreads: number;
  /** Period of the scheduled platform-certificate download (when configured), ms. */
  certificateRefreshIntervalMs: number;
}

export function ingressSettings(config: Config): IngressSettings {
  return {
    queuePrefix: config.QUEUE_PREFIX,
    bodyLimitBytes: config.INGRESS_BODY_LIMIT_BYTES,
    enqueueTimeoutMs: config.INGRESS_ENQUEUE_TIMEOUT_MS,
    dedupeTtlSeconds: config.INGRESS_DEDUPE_TTL_SECONDS,
    queueWaitingCeiling: config.INGRESS_QUEUE_WAITING_CEILING,
    timestampToleranceSeconds: config.WECHATPAY_TIMESTAMP_TOLERANCE_SECONDS,
    verifyThreads: config.INGRESS_VERIFY_THREADS,
    certificateRefreshIntervalMs: config.WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS * 1_000,
  };
}
