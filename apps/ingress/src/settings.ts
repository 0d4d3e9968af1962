import type { Config } from "@wpn/config";

/** The part of `Config` the ingress reads, with units in the names. Derived, never parsed from env here. */
export interface IngressSettings {
  queuePrefix: string;
  bodyLimitBytes: number;
  enqueueTimeoutMs: number;
  /** INGRESS_REDIS_MIN_REPLICAS: replicas that must acknowledge each enqueue batch (WAIT); 0 sends no WAIT. */
  redisMinReplicas: number;
  /** WAIT's timeout, ms (replicaWaitTimeoutMs); meaningful only with redisMinReplicas > 0. */
  replicaWaitTimeoutMs: number;
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
    redisMinReplicas: config.INGRESS_REDIS_MIN_REPLICAS,
    replicaWaitTimeoutMs: replicaWaitTimeoutMs(config.INGRESS_ENQUEUE_TIMEOUT_MS),
    dedupeTtlSeconds: config.INGRESS_DEDUPE_TTL_SECONDS,
    queueWaitingCeiling: config.INGRESS_QUEUE_WAITING_CEILING,
    timestampToleranceSeconds: config.WECHATPAY_TIMESTAMP_TOLERANCE_SECONDS,
    verifyThreads: config.INGRESS_VERIFY_THREADS,
    certificateRefreshIntervalMs: config.WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS * 1_000,
  };
}

/** Longest WAIT for replicas, ms, whatever the enqueue bound (see replicaWaitTimeoutMs). */
const REPLICA_WAIT_MAX_MS = 1_000;

/**
 * WAIT's timeout for an enqueue bound of `enqueueTimeoutMs`: half of it, at most 1 s. Half, so that a batch whose
 * replicas do not answer is refused QUEUE_NOT_REPLICATED before its requests' own bound answers them QUEUE_TIMEOUT
 * (the 503 bound is the enqueue bound either way: the intake's timer does not wait for WAIT). At most 1 s, because a
 * waiting WAIT holds the producer connection: the other batch in flight and the queue sampler's commands wait behind
 * it, and with two batches ahead a sample then waits 2 s at most, under the 3 s after which the sampler reports Redis
 * down. A replica that answers at all acknowledges within milliseconds: Redis asks it as soon as a client waits.
 */
export function replicaWaitTimeoutMs(enqueueTimeoutMs: number): number {
  return Math.max(1, Math.min(Math.floor(enqueueTimeoutMs / 2), REPLICA_WAIT_MAX_MS));
}
