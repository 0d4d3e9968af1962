import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/**
 * Counts an answered notify request. The labelled series are looked up once per (route, status, code) and kept:
 * prom-client's `inc(labels)` hashes the label object on every call. The label values are bounded (route
 * templates, statuses and registered codes), so the cache is too.
 */
export function requestCounter(metrics: IngressMetrics): (route: string, status: number, code: string) => void {
  const series = new Map<string, { inc(): void }>();
  return (route, status, code) => {
    const key = `${route} ${status} ${code}`;
    let counter = series.get(key);
    if (counter === undefined) {
      counter = metrics.requests.labels({ route, status: String(status), code });
      series.set(key, counter);
    }
    counter.inc();
  };
}

/**
 * The ingress's Prometheus metrics, in a Registry of its own (never prom-client's global one), so several
 * apps in one process — tests, the benchmark — do not share or double-register series.
 * Label values are bounded: route templates, status codes and registered error codes only.
 */
export interface IngressMetrics {
  readonly registry: Registry;
  /** Every answered notify request: `route` is the route template, `status` the HTTP status, `code` OK/DUPLICATE or an error code. */
  readonly requests: Counter<"route" | "status" | "code">;
  /** Authentication failures (bad signature, probe, stale timestamp, unknown serial, bad v2 sign/req_info). */
  readonly verificationFailures: Counter<"api" | "code">;
  /**
   * Time from handing a batch to Redis until Redis confirmed it (or it failed), seconds; `result` ok, error or
   * not_replicated (fewer replicas than INGRESS_REDIS_MIN_REPLICAS acknowledged it).
   */
  readonly enqueueDuration: Histogram<"result">;
  /** Jobs per enqueue script call (one batch). */
  readonly batchSize: Histogram;
  /** Redeliveries answered from a receipt or collapsed onto an in-flight job, without a new job. */
  readonly dedupeHits: Counter<"api" | "via">;
  /** Last sampled waiting count of the parse queue (sampled every second, -1 before the first sample). */
  readonly queueWaiting: Gauge;
  readonly queueWaitingCeiling: Gauge;
  /** 1 while the waiting count is above the ceiling. */
  readonly backpressure: Gauge;
  /** 1 while the last Redis sample succeeded. */
  readonly redisUp: Gauge;
  /** 1 while the last write probe was answered OK in time (QueueSampler): 0 makes the ingress not ready. */
  readonly redisWritable: Gauge;
  /** 1 while Redis's eviction policy may evict keys without a TTL (BullMQ's jobs): the ingress is then not ready. */
  readonly redisEvictsJobs: Gauge;
  /**
   * 1 while Redis keeps an AOF (`aof_enabled`), 0 while it does not: a restart or crash then loses the jobs and receipts
   * of notifications already acknowledged. -1 before a sample read it, or when INFO does not say.
   */
  readonly redisAofEnabled: Gauge;
  /** Merchants whose key material is loaded (default merchant included). */
  readonly merchantsLoaded: Gauge;
  /**
   * 1 once the merchant table has been read (always without one); 0 while it has not — PostgreSQL unreachable since
   * the start — and every merchant but the environment's is answered 503 MERCHANTS_UNAVAILABLE.
   */
  readonly merchantTableLoaded: Gauge;
  /** Keys of `Merchant` rows served as loaded before because the row's current value does not load (alert on > 0). */
  readonly merchantKeysKept: Gauge;
  /**
   * What the last merchant-table reload refused (MerchantRegistry.refusals), by log code: a row's key, e.g. a
   * PlatformCertificate row whose serial is not its PEM's (CERTIFICATE_SERIAL_MISMATCH), or a whole row. Alert on > 0.
   */
  readonly merchantRefusals: Gauge<"code">;
  /** Platform-certificate downloads from WeChat Pay (scheduled and on unknown serials), by result ok|failed. */
  readonly certificateDownloads: Counter<"result">;
  /**
   * Seconds until the first merchant holding platform certificates has none valid left (MerchantRegistry
   * `earliestCertificateExpiry`), negative once past, +Inf when no merchant holds one; set at scrape time. Alert well
   * ahead (e.g. under 14 days): past it that merchant's certificate-signed notifications are refused.
   */
  readonly certificateExpirySeconds: Gauge;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): IngressMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "wpn_ingress_" });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: "wpn_ingress_requests_total",
      help: "Notify requests answered, by route template, HTTP status and outcome code",
      labelNames: ["route", "status", "code"],
      registers,
    }),
    verificationFailures: new Counter({
      name: "wpn_ingress_verification_failures_total",
      help: "Notifications rejected because they could not be authenticated, by API version and error code",
      labelNames: ["api", "code"],
      registers,
    }),
    enqueueDuration: new Histogram({
      name: "wpn_ingress_enqueue_duration_seconds",
      help: "Time from sending an enqueue batch until Redis confirmed it or it failed (result=ok|error|not_replicated|reconnected)",
      labelNames: ["result"],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers,
    }),
    batchSize: new Histogram({
      name: "wpn_ingress_enqueue_batch_size",
      help: "Parse jobs sent to Redis per enqueue script call",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    }),
    dedupeHits: new Counter({
      name: "wpn_ingress_dedupe_hits_total",
      help: "Redelivered notifications answered with success without adding a job (via=receipt|job|batch)",
      labelNames: ["api", "via"],
      registers,
    }),
    queueWaiting: new Gauge({
      name: "wpn_ingress_queue_waiting",
      help: "Waiting jobs in the parse queue (sampled every second)",
      registers,
    }),
    queueWaitingCeiling: new Gauge({
      name: "wpn_ingress_queue_waiting_ceiling",
      help: "INGRESS_QUEUE_WAITING_CEILING: waiting count above which backpressure is reported",
      registers,
    }),
    backpressure: new Gauge({
      name: "wpn_ingress_backpressure",
      help: "1 while the parse queue's waiting count is above the ceiling (requests are still accepted)",
      registers,
    }),
    redisUp: new Gauge({
      name: "wpn_ingress_redis_up",
      help: "1 while the last background Redis sample succeeded",
      registers,
    }),
    redisWritable: new Gauge({
      name: "wpn_ingress_redis_writable",
      help: "1 while the last background write probe succeeded in time (0: OOM, READONLY, paused writes, …; not ready)",
      registers,
    }),
    redisEvictsJobs: new Gauge({
      name: "wpn_ingress_redis_evicts_jobs",
      help: "1 while Redis's maxmemory-policy may evict queued jobs (allkeys-* with maxmemory set); must be noeviction",
      registers,
    }),
    redisAofEnabled: new Gauge({
      name: "wpn_ingress_redis_aof_enabled",
      help: "1 while Redis keeps an AOF; 0 while it does not (a restart loses acknowledged notifications); -1 unknown",
      registers,
    }),
    merchantsLoaded: new Gauge({
      name: "wpn_ingress_merchants_loaded",
      help: "Merchants whose verification keys are loaded",
      registers,
    }),
    merchantTableLoaded: new Gauge({
      name: "wpn_ingress_merchant_table_loaded",
      help: "1 once the Merchant table has been read; 0 while not (its merchants are answered 503 MERCHANTS_UNAVAILABLE)",
      registers,
    }),
    merchantKeysKept: new Gauge({
      name: "wpn_ingress_merchant_keys_kept",
      help: "Merchant-row keys whose current value does not load, still served as loaded before (fix the row; a restart drops them)",
      registers,
    }),
    merchantRefusals: new Gauge({
      name: "wpn_ingress_merchant_refusals",
      help: "What the last Merchant-table reload refused, by log code: a row's key (kept as loaded before or left out) or a whole row; 0 once fixed",
      labelNames: ["code"],
      registers,
    }),
    certificateDownloads: new Counter({
      name: "wpn_ingress_certificate_downloads_total",
      help: "Platform-certificate downloads from WeChat Pay (at start, scheduled, on an unknown serial), by result",
      labelNames: ["result"],
      registers,
    }),
    certificateExpirySeconds: new Gauge({
      name: "wpn_ingress_certificate_expiry_seconds",
      help: "Seconds until the first merchant holding platform certificates has none valid left (negative: past; +Inf: no certificate held)",
      registers,
    }),
  };
}
