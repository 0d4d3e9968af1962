import underPressure from "@fastify/under-pressure";
import { createQueue, createReceiptedAdder, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { RsaVerifyPool, verifyV3, verifyV3Async, verifyV3InPool } from "@wpn/wechatpay";
import type { Queue } from "bullmq";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { createClientErrorHandler } from "./client-error.ts";
import { EnqueueBatcher } from "./enqueue/batcher.ts";
import { Intake } from "./enqueue/intake.ts";
import { CertificateSchedule } from "./merchants/certificate-download.ts";
import type { MerchantRegistry } from "./merchants/registry.ts";
import { createMetrics, type IngressMetrics, requestCounter } from "./metrics.ts";
import { QueueSampler } from "./queue-sampler.ts";
import { ANSWER_BUDGET_MS } from "./routes/budget.ts";
import type { NotifyContext } from "./routes/context.ts";
import { handleNotFound, handleRouterError } from "./routes/failure.ts";
import { healthRoutes } from "./routes/health.ts";
import { notifyV2Routes } from "./routes/notify-v2.ts";
import { notifyV3Routes } from "./routes/notify-v3.ts";
import type { IngressSettings } from "./settings.ts";
import { within } from "./within.ts";

/**
 * How APIv3 signatures are checked: on the event loop ("sync"), on the libuv thread pool ("async"), or batched
 * on worker threads ("threads", an `RsaVerifyPool`); see bench/ingress-report.md.
 */
export type VerifyMode = "sync" | "async" | "threads";

export interface IngressDeps {
  settings: IngressSettings;
  /** Producer connection (`createRedisConnection(url, "producer")`); the caller owns and closes it. */
  redis: Redis;
  merchants: MerchantRegistry;
  /** JSON logger; silent when absent. */
  logger?: Logger;
  metrics?: IngressMetrics;
  /** ms since the epoch. */
  clock?: () => number;
  /**
   * Default from `settings.verifyThreads`: "threads" (an RsaVerifyPool of that many threads) when it is > 0,
   * else "sync" (RSA, ~25 µs, on the event loop). "async" (libuv thread pool) is kept for comparison: the event
   * loop still spent as long in `crypto.verify` (OpenSSL 3 serialises the key and digest set-up across threads)
   * and throughput was lower or equal in every bench run since the enqueue became one script call
   * (bench/ingress-report.md).
   */
  verifyMode?: VerifyMode;
  /** Largest enqueue batch (one script call); default 256. */
  maxBatchSize?: number;
  /** Enqueue batches in flight at once; default 2 (see EnqueueBatcher and bench/ingress-report.md). */
  maxInFlightBatches?: number;
  /** Shed with 503 OVERLOADED when the event-loop delay passes this, ms; `false` disables shedding. Default 1000. */
  maxEventLoopDelayMs?: number | false;
  /** Queue sampling period, ms. Default 1000. */
  sampleIntervalMs?: number;
  /** A Redis that has not answered a sample for this long gets its connection reopened, ms (queue-sampler.ts). */
  redisReopenAfterMs?: number;
  /**
   * First retry of the default merchant's scheduled certificate download after a failure, ms (CertificateSchedule);
   * the registry's rows take theirs from its `download.schedule`. Default: a minute, the refresher's throttle.
   */
  certificateRetryMs?: number;
}

/** What `buildApp` exposes besides the routes, for the entry point and tests. */
export interface IngressHandle {
  readonly queue: Queue;
  readonly sampler: QueueSampler;
  readonly metrics: IngressMetrics;
  readonly batcher: EnqueueBatcher;
  /** The default merchant's scheduled certificate download, when configured (started when the app is ready). */
  readonly certificates: CertificateSchedule | undefined;
  /**
   * Lame duck, before `close()`: /health/ready answers 503 so load balancers stop choosing this process, and every
   * answer says `Connection: close` so clients move off their kept-alive connections; requests are served as usual.
   */
  startDraining(): void;
}

declare module "fastify" {
  interface FastifyInstance {
    ingress: IngressHandle;
  }
}

/**
 * Builds the ingress as an un-listened Fastify instance (use `inject()` in tests, `listen()` in main).
 * Closing it waits for in-flight requests, drains pending enqueues and closes the parse Queue; the Redis
 * connection stays open for the caller to quit.
 */
export function buildApp(deps: IngressDeps): FastifyInstance {
  const logger = deps.logger ?? pino({ level: "silent" });
  const metrics = deps.metrics ?? createMetrics();
  const clock = deps.clock ?? Date.now;
  const { settings, redis, merchants } = deps;
  // Requests refused outside every route: by the router (a malformed URL) or for want of one (not found).
  const countOutsideRoutes = requestCounter(metrics);

  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the instance type the plain FastifyInstance.
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per rejected notification instead of two per request: at thousands of requests per
    // second the default request logging would cost more than the verification.
    logController: new LogController({ disableRequestLogging: true }),
    // The notify routes set their own, smaller limit; everything else has no body.
    bodyLimit: settings.bodyLimitBytes,
    // Fastify's own 503 for requests arriving on kept-alive sockets while closing is JSON WeChat does not read;
    // the notify routes answer those themselves, in WeChat's format (SHUTTING_DOWN, `isClosing` below).
    return503OnClosing: false,
    // WeChat's requests are ~1–2 KiB and it gives up after 5 s: a connection that goes silent mid-request (or never
    // sends one) for CLIENT_TIMEOUT_MS is a stalled client or an attack holding a connection and a file descriptor,
    // and is closed (connectionTimeout); so is a request, headers and body, not complete within it — a body trickled
    // in a byte at a time gets 408 REQUEST_TIMEOUT (requestTimeout, checked every 2 s; client-error.ts). Node only
    // applies the request bound when its headers bound is not longer (measured on Node 20: with Fastify's requestTimeout alone, which leaves
    // the 60 s headersTimeout, a trickle went on for as long as it lasted), hence headersTimeout here too. Idle
    // kept-alive connections between requests keep Node's keep-alive timeout.
    connectionTimeout: CLIENT_TIMEOUT_MS,
    requestTimeout: CLIENT_TIMEOUT_MS,
    // requireHostHeader: Node answers an HTTP/1.1 request without Host 400 with an empty body itself, past both the
    // client-error handler and the routes — unlogged and uncounted. Host carries nothing the ingress uses (a
    // notification is authenticated by its signature), so such a request is routed and checked like any other.
    http: { connectionsCheckingInterval: 2_000, headersTimeout: CLIENT_TIMEOUT_MS, requireHostHeader: false },
    clientErrorHandler: createClientErrorHandler(logger, requestCounter(metrics)),
    frameworkErrors: (error, request, reply) => handleRouterError(error, request, reply, countOutsideRoutes),
  });

  const queue = createQueue(QueueName.Parse, redis, settings.queuePrefix);
  // A Queue re-emits connection errors; without a listener an EventEmitter 'error' would crash the process.
  // The sampler and the failed requests report outages, so this only needs to keep a trace.
  queue.on("error", (error) => logger.debug({ err: error }, "parse queue connection error"));
  const sampler = new QueueSampler(
    queue,
    settings.queueWaitingCeiling,
    metrics,
    logger,
    deps.sampleIntervalMs ?? 1_000,
    clock,
    {
      reopenAfterMs: deps.redisReopenAfterMs ?? 10_000,
      reopen: () => redis.disconnect(true),
      role: () => redis.call("ROLE"),
      memoryInfo: () => redis.info("memory"),
      persistenceInfo: () => redis.info("persistence"),
      // One key per deployment (every process writes the same one), gone WRITE_PROBE_TTL_MS after the last probe.
      write: () => redis.set(`${settings.queuePrefix}:ingress:write-probe`, "1", "PX", WRITE_PROBE_TTL_MS),
      // A write slower than a notification's own enqueue bound would have been answered 503 QUEUE_TIMEOUT.
      writeTimeoutMs: settings.enqueueTimeoutMs,
      events: redis,
    },
  );
  const batcher = new EnqueueBatcher({
    adder: createReceiptedAdder(queue, redis, PARSE_JOB_NAME, {
      prefix: settings.queuePrefix,
      ttlSeconds: settings.dedupeTtlSeconds,
      ...(settings.redisMinReplicas > 0
        ? { replication: { replicas: settings.redisMinReplicas, timeoutMs: settings.replicaWaitTimeoutMs } }
        : {}),
    }),
    maxBatchSize: deps.maxBatchSize ?? 256,
    maxInFlight: deps.maxInFlightBatches ?? 2,
    clock,
    metrics,
    vouching: sampler,
  });
  const intake = new Intake(batcher, redis, settings.enqueueTimeoutMs, metrics, () => sampler.unkeptBecause);
  const refresher = merchants.defaultMerchant.certificateRefresher;
  const certificates =
    refresher &&
    new CertificateSchedule(refresher, {
      intervalMs: settings.certificateRefreshIntervalMs,
      ...(deps.certificateRetryMs === undefined ? {} : { retryMs: deps.certificateRetryMs }),
    });
  let draining = false;
  let closing = false;
  let idleSweep: NodeJS.Timeout | undefined;
  let stalledCut: NodeJS.Timeout | undefined;
  app.addHook("preClose", async () => {
    closing = true;
    // Node's close() ends only the keep-alive connections idle at that moment; one whose request was in flight
    // would hold close() until its client hangs up (a load balancer's may never). Each is closed here as soon as its
    // answer is written, which costs the request path nothing.
    idleSweep = setInterval(() => app.server.closeIdleConnections(), 50);
    idleSweep.unref();
    // Node counts neither a connection that sent nothing yet nor one still sending its request as idle. Once every
    // request received before closing has had its answer (the 4.5 s answer budget), whatever is still open is a
    // stalled client: closed, so shutdown does not wait for it until the deadline.
    stalledCut = setTimeout(() => app.server.closeAllConnections(), STALLED_CUT_MS);
    stalledCut.unref();
  });
  app.decorate("ingress", {
    queue,
    sampler,
    metrics,
    batcher,
    certificates,
    startDraining: () => {
      draining = true;
    },
  } satisfies IngressHandle);
  app.decorateRequest("ingressCode", "");
  // An answer written while draining or closing tells the client so (Connection: close; Node then ends the socket
  // after it). Fastify does that only for requests that arrive once closing; an answer to one in flight said
  // keep-alive, and a client sending its next notification on that socket at once had it cut off unanswered by the
  // idle sweep above. While draining (main.ts's lame-duck delay, before closing) it moves every client that sends
  // anything off its connection before closing shuts the idle ones. A request pipelined behind it is dropped with the
  // socket, as in nginx's graceful shutdown (WeChat does not pipeline). Callback style: an async hook costs a promise
  // per request.
  app.addHook("onSend", (_request, reply, payload, done) => {
    if (draining || closing) reply.header("connection", "close");
    done(null, payload);
  });

  const verifyMode = deps.verifyMode ?? (settings.verifyThreads > 0 ? "threads" : "sync");
  const verifyPool =
    verifyMode === "threads" ? new RsaVerifyPool({ threads: Math.max(1, settings.verifyThreads) }) : undefined;
  const ctx: NotifyContext = {
    settings,
    merchants,
    intake,
    metrics,
    clock,
    verifyV3: verifyPool
      ? (headers, body, opts) => verifyV3InPool(headers, body, { ...opts, pool: verifyPool })
      : verifyMode === "async"
        ? verifyV3Async
        : verifyV3,
    isClosing: () => closing,
  };

  app.register(async (notify) => {
    const maxEventLoopDelay = deps.maxEventLoopDelayMs ?? 1_000;
    if (maxEventLoopDelay !== false) {
      // Without a pressureHandler, under-pressure fails the request with FST_UNDER_PRESSURE (503 +
      // Retry-After), which the route's error handler answers as OVERLOADED in the route's wire format.
      await notify.register(underPressure, { maxEventLoopDelay });
    }
    const countRequest = requestCounter(metrics);
    // Callback style: an async hook costs a promise per request.
    notify.addHook("onResponse", (request, reply, done) => {
      countRequest(request.routeOptions.url ?? "unknown", reply.statusCode, request.ingressCode || "UNKNOWN");
      done();
    });
    await notify.register(async (v3) => notifyV3Routes(v3, ctx));
    await notify.register(async (v2) => notifyV2Routes(v2, ctx));
  });
  app.register(async (health) =>
    healthRoutes(health, { redis, sampler, merchants, metrics, isDraining: () => draining }),
  );

  app.setNotFoundHandler((request, reply) => handleNotFound(request, reply, countOutsideRoutes));

  app.addHook("onReady", async () => {
    sampler.start();
    // Not awaited: WeChat's API being slow must not keep the ingress from listening (the public key or configured
    // certificates may verify everything); /health/ready stays 503 while the merchant has no key at all.
    void certificates?.start();
  });
  app.addHook("onClose", async () => {
    clearInterval(idleSweep);
    clearTimeout(stalledCut);
    sampler.stop();
    certificates?.stop();
    // Every request has had its answer by now (at the latest its 503 at the end of its answer budget); the drain only
    // waits for Redis to confirm what it was sent, which a healthy Redis does in milliseconds and a hanging one
    // never: a second at most, so shutdown stays well within main.ts's 10 s deadline.
    await within(batcher.drain(), CLOSE_STEP_MS);
    await within(queue.close(), CLOSE_STEP_MS);
    await verifyPool?.close();
  });
  return app;
}

/** Longest silence of a client mid-request, and longest time for its request headers, ms (see the options above). */
const CLIENT_TIMEOUT_MS = 10_000;

/** Expiry of the queue sampler's write-probe key, ms: a few sampling intervals, so nothing stays behind. */
const WRITE_PROBE_TTL_MS = 10_000;

/**
 * When closing cuts the connections still open, ms after it began: every request received before has had its answer
 * by then (the answer budget), so what is left is a stalled client.
 */
export const STALLED_CUT_MS = ANSWER_BUDGET_MS + 500;

/**
 * Longest wait for each Redis step of closing (drain, queue close; main.ts's QUIT too), ms. With STALLED_CUT_MS, the
 * bounds INGRESS_CLOSE_MAX_MS of @wpn/config adds up (apps/ingress/test/lame-duck.test.ts checks it).
 */
export const CLOSE_STEP_MS = 1_000;
