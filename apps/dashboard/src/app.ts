import { randomBytes } from "node:crypto";
import fastifyCookie from "@fastify/cookie";
import fastifyFormbody from "@fastify/formbody";
import type { Config } from "@wpn/config";
import { classifyDbError, type Db } from "@wpn/db";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from "fastify";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { DashboardCookies } from "./auth/cookies.ts";
import { installCsrf } from "./auth/csrf.ts";
import { actionName, installAuthGuard, SAFE_METHODS } from "./auth/guard.ts";
import { LoginRateLimiter } from "./auth/rate-limit.ts";
import { openSessionCheckPool } from "./auth/revocations.ts";
import { deriveKey, SessionCodec } from "./auth/session.ts";
import { parseUsers } from "./auth/users.ts";
import { createClientErrorHandler } from "./client-error.ts";
import { createQueues, type DashboardContext } from "./context.ts";
import { recordAudit, recordAuditOutcome } from "./data/audit.ts";
import { createMetrics, type DashboardMetrics } from "./metrics.ts";
import { registerDeadLetterRoutes } from "./routes/dead-letters.ts";
import { registerHealthRoutes } from "./routes/health.ts";
import { registerKeyRoutes } from "./routes/keys.ts";
import { registerLoginRoutes } from "./routes/login.ts";
import { registerNotificationRoutes } from "./routes/notification.ts";
import { registerNotificationSearchRoutes } from "./routes/notifications.ts";
import { registerOverviewRoutes } from "./routes/overview.ts";
import { sendError } from "./routes/page.ts";
import { BULL_BOARD_PATH, BULL_BOARD_READONLY_PATH, registerBullBoards } from "./routes/queues.ts";
import { registerReviewRoutes } from "./routes/reviews.ts";
import { securityHeaders } from "./security-headers.ts";

export interface AppDeps {
  config: Config;
  db: Db;
  /** An admin Redis connection (`createRedisConnection(url, "admin")`); the caller owns and closes it. */
  redis: Redis;
  /** pino logger; omitted = silent (tests). */
  logger?: FastifyBaseLogger;
  metrics?: DashboardMetrics;
  /** Clock, for tests. */
  now?: () => Date;
}

export interface RegisteredRoute {
  method: string;
  url: string;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route registered in this app (ours and bull-board's), for the "nothing without login" test. */
    readonly dashboardRoutes: readonly RegisteredRoute[];
  }
  interface FastifyRequest {
    /** The AuditLog row of a bull-board action, written before the action ran (its outcome is added in onSend). */
    bullBoardAuditId: bigint | undefined;
  }
}

/**
 * Longest route parameter the router matches, characters (decoded); a longer one is answered 414
 * FST_ERR_MAX_PARAM_LENGTH before any route. Fastify's default, 100, is shorter than ids the pipeline makes: a
 * notification id may have NOTIFICATION_ID_MAX_LENGTH (128) characters (an APIv2 refund's, 120 with WeChat's documented
 * field lengths), its dead letter's id 20 more (deadLetterJobId) — their pages and bull-board's job routes answered 414.
 * Above the notification page's own limit (256, a 400 BAD_REQUEST) so that limit answers; a URL is bounded anyway by
 * Node's header size.
 */
const MAX_ROUTE_PARAM_LENGTH = 1024;

/**
 * Longest time to receive a request, headers and body, ms. A browser's forms are a few hundred bytes and bull-board's
 * actions have no body, so this is far more than a slow link needs (the ingress's bound too).
 */
const CLIENT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * The dashboard as an un-listened Fastify instance (tests use inject(); main.ts listens). Order matters:
 * cookie parsing, then the auth hook and CSRF check on the root instance, then routes and bull-board, so the
 * hooks apply to every route.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const logger = deps.logger ?? pino({ level: "silent" });
  const now = deps.now ?? (() => new Date());
  const metrics = deps.metrics ?? createMetrics();
  const cookies = new DashboardCookies(config.DASHBOARD_COOKIE_SECURE);
  const app = Fastify({
    loggerInstance: logger,
    trustProxy: trustProxyOption(config.DASHBOARD_TRUST_PROXY),
    bodyLimit: 256 * 1024,
    routerOptions: { maxParamLength: MAX_ROUTE_PARAM_LENGTH },
    // A request (headers and body) not received within CLIENT_REQUEST_TIMEOUT_MS is answered 408 and its connection
    // closed; Node checks every 2 s. Fastify's default (0) left no bound at all on a body, and Node's 60 s on headers:
    // anyone reaching the port held a connection and a file descriptor for as long as they trickled a login form in,
    // a byte at a time, with no session needed. Node applies the request bound only when the headers' bound is not
    // longer, hence both. Only the receiving is bounded: a page that takes long to compute (a statement up to
    // DASHBOARD_PG_STATEMENT_TIMEOUT_MS) is not cut, which an idle-socket bound (connectionTimeout) would do.
    requestTimeout: CLIENT_REQUEST_TIMEOUT_MS,
    http: { headersTimeout: CLIENT_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 2_000 },
    // That 408, and any request Node refuses before routing it (headers too large, malformed HTTP), runs no hook
    // either: answered, logged and counted like our other refusals by client-error.ts, not Fastify's bare JSON.
    clientErrorHandler: createClientErrorHandler(logger, metrics, config.DASHBOARD_COOKIE_SECURE),
    // Requests the router refuses before routing them (a URL with a malformed escape, FST_ERR_BAD_URL) run no hook:
    // they get the same answer, headers and count as a routed request here, not Fastify's bare JSON.
    frameworkErrors: (error, request, reply) => {
      setSecurityHeaders(reply, cookies);
      answerError(error, request, reply, config);
      countResponse(metrics, request, reply);
    },
  });
  if (config.DASHBOARD_TRUST_PROXY === true) {
    logger.warn(
      { code: "TRUST_PROXY_ANY_PEER" },
      "DASHBOARD_TRUST_PROXY=true trusts X-Forwarded-* from any peer: the port must be reachable only through the proxy (or set DASHBOARD_TRUST_PROXY to the proxy's addresses)",
    );
  }

  let secret = config.DASHBOARD_SESSION_SECRET;
  if (!secret) {
    secret = randomBytes(32).toString("base64url");
    logger.warn(
      "DASHBOARD_SESSION_SECRET is not set: using a random per-process secret, so sessions end when the process restarts and are not shared between replicas",
    );
  }
  const users = parseUsers(config.DASHBOARD_USERS);
  if (users.size === 0) logger.warn("DASHBOARD_USERS is empty: nobody can log in (see apps/dashboard/README.md)");

  const ctx: DashboardContext = {
    config,
    db: deps.db,
    sessionChecks: openSessionCheckPool(deps.db),
    redis: deps.redis,
    queues: createQueues(deps.redis, config.QUEUE_PREFIX),
    prefix: config.QUEUE_PREFIX,
    users,
    sessions: new SessionCodec(
      secret,
      { ttlSeconds: config.DASHBOARD_SESSION_TTL_SECONDS, idleSeconds: config.dashboardSessionIdleSeconds },
      () => now().getTime(),
    ),
    cookies,
    loginLimiter: new LoginRateLimiter(
      deps.redis,
      config.QUEUE_PREFIX,
      config.DASHBOARD_LOGIN_ATTEMPTS_PER_MINUTE,
      60_000,
      () => now().getTime(),
    ),
    metrics,
    now,
  };

  // A Queue re-emits its connection's errors; without a listener BullMQ prints each one. Redis being down is
  // already visible in /health/ready, so log it at most every 10 s.
  let lastQueueError = 0;
  for (const queue of Object.values(ctx.queues)) {
    queue.on("error", (error: Error) => {
      if (Date.now() - lastQueueError < 10_000) return;
      lastQueueError = Date.now();
      logger.warn({ err: error }, "Redis error in a queue client");
    });
  }

  const routes: RegisteredRoute[] = [];
  app.decorate("dashboardRoutes", routes);
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });

  await app.register(fastifyCookie, { secret: deriveKey(secret, "cookie-signing").toString("base64url") });
  await app.register(fastifyFormbody);
  installAuthGuard(app, ctx);
  installCsrf(app, ctx, deriveKey(secret, "csrf token"));
  app.decorateRequest("bullBoardAuditId", undefined);
  app.addHook("preHandler", async (request) => {
    // Root preHandlers run in order: reaching this one means the CSRF hook let the request through.
    if (SAFE_METHODS.has(request.method)) return;
    // bull-board's actions are not ours to instrument, so they are audited from the outside: the row is written
    // before bull-board runs the action — an action that cannot be audited does not happen (the write's error
    // answers 500) — and completed with the outcome in onSend.
    if (isBullBoardRoute(request) && request.auth) {
      const params = request.params as Record<string, string>;
      const route = request.routeOptions.url ?? "";
      request.bullBoardAuditId = await recordAudit(
        ctx.db.prisma,
        {
          actor: request.auth.user.name,
          role: request.auth.user.role,
          action: actionName(request),
          target: [params.queueName, params.jobId ?? params.queueStatus].filter(Boolean).join("/") || undefined,
          detail: { method: request.method, route, params, status: null },
        },
        now(),
      );
    }
  });

  app.addHook("onSend", async (_request, reply, payload) => {
    setSecurityHeaders(reply, cookies);
    return payload;
  });

  app.addHook("onResponse", async (request, reply) => countResponse(metrics, request, reply));

  // The outcome of a bull-board action (audited in the preHandler above), before the response leaves, so a client
  // that saw the answer can rely on the row saying how it ended. Our own actions audit themselves.
  app.addHook("onSend", async (request, reply, payload) => {
    const auditId = request.bullBoardAuditId;
    if (auditId === undefined) return payload;
    const action = actionName(request);
    ctx.metrics.actions.inc({ action, result: reply.statusCode < 400 ? "ok" : "error" });
    try {
      await recordAuditOutcome(ctx.db.prisma, auditId, {
        method: request.method,
        route: request.routeOptions.url ?? "",
        params: request.params as Record<string, string>,
        status: reply.statusCode,
      });
    } catch (error) {
      // The row exists (the action was audited before it ran); only its outcome is missing.
      request.log.error(
        { err: error, action, auditId: String(auditId) },
        "could not record a bull-board action's outcome",
      );
    }
    return payload;
  });

  app.setErrorHandler((error: Error, request, reply) => answerError(error, request, reply, config));
  app.setNotFoundHandler((request, reply) => sendError(request, reply, 404, "NOT_FOUND", "No such page."));

  registerHealthRoutes(app, ctx);
  registerLoginRoutes(app, ctx);
  registerOverviewRoutes(app, ctx);
  registerNotificationSearchRoutes(app, ctx);
  registerNotificationRoutes(app, ctx);
  registerReviewRoutes(app, ctx);
  registerDeadLetterRoutes(app, ctx);
  registerKeyRoutes(app, ctx);
  await registerBullBoards(app, ctx);

  app.addHook("onClose", async () => {
    await Promise.all([...Object.values(ctx.queues).map((queue) => queue.close()), ctx.sessionChecks.end()]);
  });
  return app;
}

/**
 * Fastify's trustProxy for DASHBOARD_TRUST_PROXY. `true` trusts one hop from any peer: the client address is the one
 * the reverse proxy appended to X-Forwarded-For (Fastify's own `true` would take the leftmost entry, which the client
 * writes itself: a new one per attempt would dodge the login limit). A list trusts those addresses only, however
 * many of them the request passed.
 */
function trustProxyOption(setting: Config["DASHBOARD_TRUST_PROXY"]): FastifyServerOptions["trustProxy"] {
  if (setting === true) return (_address: string, hop: number) => hop === 0;
  return setting;
}

/**
 * Headers on every answer, routed or not (`securityHeaders`), and `Cache-Control: no-store` unless the answer set its
 * own. HSTS as the cookies' Secure flag decides (DASHBOARD_COOKIE_SECURE, or the request came over HTTPS:
 * cookies.ts). A URL the router refuses gets a request built without the trust-proxy getters (Fastify's
 * frameworkErrors), so there only the setting or a TLS socket adds it.
 */
function setSecurityHeaders(reply: FastifyReply, cookies: DashboardCookies): void {
  reply.headers(securityHeaders(cookies.secure(reply.request)));
  if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
}

/**
 * An error's answer: its own 4xx status and code (Fastify's, a plugin's); a statement PostgreSQL cancelled (SQLSTATE
 * 57014: the dashboard's statement_timeout, DASHBOARD_PG_STATEMENT_TIMEOUT_MS, or a cancel on the server) as 503
 * STATEMENT_TIMEOUT, which the reader can act on (try again, narrow the search) where a 500 told nothing; otherwise a
 * logged 500 without details.
 */
function answerError(
  error: Error & { statusCode?: number; code?: string },
  request: FastifyRequest,
  reply: FastifyReply,
  config: Config,
): FastifyReply {
  const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
  if (status >= 500 && classifyDbError(error).sqlstate === "57014") {
    const timeoutMs = config.DASHBOARD_PG_STATEMENT_TIMEOUT_MS;
    request.log.warn({ err: error, code: "STATEMENT_TIMEOUT", timeoutMs }, "a statement of the request was cancelled");
    return sendError(
      request,
      reply,
      503,
      "STATEMENT_TIMEOUT",
      `PostgreSQL cancelled a statement of this page: it ran past the dashboard's statement timeout (DASHBOARD_PG_STATEMENT_TIMEOUT_MS, ${timeoutMs} ms) or was cancelled on the server. The database is slow or a table is locked; try again, or narrow a search with a time range.`,
    );
  }
  if (status >= 500) {
    request.log.error({ err: error }, "request failed");
    return sendError(request, reply, status, "INTERNAL_ERROR", "Something went wrong; the error was logged.");
  }
  return sendError(request, reply, status, error.code ?? "BAD_REQUEST", error.message);
}

/** Counts an answered request under its route pattern (`unmatched` without one: a 404, a URL the router refused). */
function countResponse(metrics: DashboardMetrics, request: FastifyRequest, reply: FastifyReply): void {
  const route = request.routeOptions.url ?? "unmatched";
  metrics.requests.inc({ method: request.method, route, status: String(reply.statusCode) });
  metrics.requestDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
}

/** bull-board's own routes, on either board. */
function isBullBoardRoute(request: FastifyRequest): boolean {
  const route = request.routeOptions.url ?? "";
  return route.startsWith(`${BULL_BOARD_PATH}/`) || route.startsWith(`${BULL_BOARD_READONLY_PATH}/`);
}
