import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { DashboardContext } from "../context.ts";
import { sendForbidden } from "../routes/forbidden.ts";
import { sendError, wantsHtml } from "../routes/page.ts";
import { sendSessionEnded } from "../routes/session-ended.ts";
import { SESSION_COOKIE } from "./cookies.ts";
import { isRevoked } from "./revocations.ts";
import type { SessionCheck, SessionClaims, SessionUser } from "./session.ts";

/**
 * Per-route access, set in a route's `config`. Anything without `access` needs a session, and a mutating
 * method (POST, PUT, PATCH, DELETE) additionally needs the operator role. Routes we do not declare
 * ourselves (bull-board's, the 404 handler) therefore get the strictest treatment by default.
 * - `public`: no session (login, health, metrics);
 * - `logout`: any logged-in user, also for mutating methods; and a request whose session is not live (logged out on
 *   another tab or replica, expired, its user's password changed) or absent reaches the handler too, which then only
 *   clears the cookie: the browser would otherwise keep sending a dead one. When the session cannot be checked it is
 *   refused (503) like any non-public route: a live session must be revoked, not only forgotten by this browser.
 */
export type Access = "public" | "logout";

/**
 * Whether a route's requests are use of the session, set in a route's `config`. Absent: a request of a route that needs
 * a session uses it (a page, a form, a bull-board action), which keeps it from its idle limit (the cookie is re-issued,
 * session.ts). `background`: requests a page sends by itself on a timer — bull-board's client reads its API every few
 * seconds while its tab is open, whether anyone looks or not — which need the session but do not keep it in use, so an
 * open tab nobody looks at still ends (routes/queues.ts marks them).
 */
export type Activity = "background";

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
    activity?: Activity;
  }
  interface FastifyRequest {
    /** Set by the root onRequest hook for every request that carries a valid session. */
    auth: { user: SessionUser; claims: SessionClaims } | null;
  }
}

export const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Installs authentication and role checks as ONE onRequest hook on the root instance, so they cover every
 * route registered anywhere in the app (bull-board's routes and API included) and the not-found handler.
 * Must be called before any route or plugin is registered.
 */
export function installAuthGuard(app: FastifyInstance, ctx: DashboardContext): void {
  app.decorateRequest("auth", null);

  app.addHook("onRequest", async (request, reply) => {
    const access = request.routeOptions.config?.access;
    const session = checkSession(request, ctx);
    let auth = liveAuth(session, ctx);
    // A cookie past its idle limit or lifetime is refused below and counted as its session's end, unless the session
    // was logged out before: that logout counted its end already (`result="ok"`), so it is looked up as a live one is.
    const ending = access === undefined && (session.state === "idle" || session.state === "expired") ? session : null;
    let loggedOut = false;
    const sid = auth?.claims.sid ?? ending?.claims.sid;
    if (sid !== undefined) {
      try {
        loggedOut = await isRevoked(ctx.sessionChecks, sid);
        if (loggedOut) auth = null;
      } catch (error) {
        // Fail closed: without PostgreSQL (down, or not answering within SESSION_CHECK_TIMEOUT_MS) a logout on any
        // replica cannot be seen, so no session is taken as valid. A public route goes on without one (the login page,
        // health, metrics still answer); any other gets 503, not a redirect to a login that could not be audited either.
        request.log.error({ err: error, code: "SESSION_CHECK_UNAVAILABLE" }, "could not check the session's logout");
        request.auth = null;
        if (access === "public") return;
        return sendError(
          request,
          reply,
          503,
          "SESSION_CHECK_UNAVAILABLE",
          "The session cannot be checked: the database does not answer. Try again shortly.",
        );
      }
    }
    request.auth = auth;
    if (access === "public") return;
    if (!auth) {
      if (access === "logout") return;
      if (ending) {
        if (!loggedOut && (await firstEndSeen(request, ctx, ending.claims))) {
          if (ending.state === "expired") endExpiredSession(request, ctx, ending.claims);
          else endIdleSession(request, ctx, ending.claims);
        }
        // Cleared either way, so that the browser stops sending a cookie that can never work again.
        ctx.cookies.clear(reply, SESSION_COOKIE);
      }
      return rejectUnauthenticated(request, reply);
    }
    // Only routes that need a session count as its use: not the public ones (the login page a browser is sent back to),
    // nor logout, which ends it.
    if (access === undefined && request.routeOptions.config?.activity !== "background") {
      slideIdleLimit(reply, ctx, auth.claims);
    }
    if (!SAFE_METHODS.has(request.method) && access !== "logout" && auth.user.role !== "operator") {
      ctx.metrics.actions.inc({ action: actionName(request), result: "denied" });
      request.log.warn(
        { user: auth.user.name, role: auth.user.role, route: request.routeOptions.url },
        "mutation denied: operator role required",
      );
      return sendForbidden(request, reply, auth.user);
    }
  });
}

/**
 * The live session the cookie proves, before the logout check (which needs PostgreSQL, see revocations.ts). Also the
 * session a login ends (routes/login.ts), whatever that check said.
 */
export function authenticate(request: FastifyRequest, ctx: DashboardContext): FastifyRequest["auth"] {
  return liveAuth(checkSession(request, ctx), ctx);
}

/**
 * The session of a cookie that went unused past the idle limit (`idle`), with its user as configured now; null for any
 * other cookie. Such a cookie is refused everywhere, but its session is not over: another copy of the cookie (taken
 * from the browser, and used since) carries a fresher stamp and still works — what a logout must end (routes/login.ts).
 */
export function idleSession(request: FastifyRequest, ctx: DashboardContext): FastifyRequest["auth"] {
  const session = checkSession(request, ctx);
  const user = session.state === "idle" ? ctx.users.get(session.claims.sub) : undefined;
  if (session.state !== "idle" || !user) return null;
  return { user: { name: user.name, role: user.role }, claims: session.claims };
}

/** What the request's session cookie is (`SessionCodec.check`), before the logout check. */
function checkSession(request: FastifyRequest, ctx: DashboardContext): SessionCheck {
  // The configuration, not the cookie, decides who exists, with which password and role: removing a user, resetting
  // their password (their sessions end) or demoting them takes effect on the next request after a restart with the
  // new DASHBOARD_USERS.
  return ctx.sessions.check(ctx.cookies.read(request, SESSION_COOKIE), (name) => ctx.users.get(name)?.passwordHash);
}

function liveAuth(session: SessionCheck, ctx: DashboardContext): FastifyRequest["auth"] {
  const user = session.state === "live" ? ctx.users.get(session.claims.sub) : undefined;
  if (session.state !== "live" || !user) return null;
  return { user: { name: user.name, role: user.role }, claims: session.claims };
}

/**
 * A request of a live session that uses it: the cookie, re-issued with the last use stamped now once the stamp it
 * carries is old enough (`SessionCodec.touch`; no database write — the stamp travels in the cookie). Its CSRF tokens
 * stay good: they are bound to the session id, which the new cookie keeps (csrf.ts).
 */
function slideIdleLimit(reply: FastifyReply, ctx: DashboardContext, claims: SessionClaims): void {
  const touched = ctx.sessions.touch(claims);
  if (!touched) return;
  ctx.cookies.set(reply, SESSION_COOKIE, touched.value, { maxAge: ctx.sessions.maxAgeSeconds(touched.claims) });
}

/**
 * Whether this request is the first to see its session's end, across every dashboard process: a session ends once,
 * however many of its requests were in flight when it did (a board tab's polls, several tabs) or reach another replica.
 * A Redis SET NX per session id, kept for the session's lifetime (seconds) — past it the browser has dropped the
 * cookie. When Redis does not answer the end is counted anyway: a second count beats losing the first.
 */
async function firstEndSeen(request: FastifyRequest, ctx: DashboardContext, claims: SessionClaims): Promise<boolean> {
  const key = `${ctx.prefix}:dashboard:session-ended:${claims.sid}`;
  try {
    return (await ctx.redis.set(key, "1", "EX", ctx.sessions.lifetimeSeconds(claims), "NX")) === "OK";
  } catch (error) {
    request.log.warn(
      { err: error, code: "SESSION_END_UNRECORDED", sid: claims.sid },
      "could not record the session's end in Redis; counted here, perhaps again elsewhere",
    );
    return true;
  }
}

/**
 * A request whose session went unused past the idle limit (DASHBOARD_SESSION_IDLE_SECONDS), which is then refused as
 * an expired one is: logged with its code, counted as a session ended (`dashboard_actions_total{action="logout",
 * result="idle"}`, beside the logouts' `result="ok"`), and its cookie cleared by the refusal (the guard), so that the
 * browser stops sending it — bull-board's polls in a tab left open would otherwise count the same session again every
 * few seconds. Not called for a session logged out before (its logout counted its end), and only for the first request
 * that sees the end (`firstEndSeen`): requests in flight with it, or a script that keeps sending it, are refused
 * without counting it again. Nothing is revoked: the cookie's own stamp keeps it refused for good.
 */
function endIdleSession(request: FastifyRequest, ctx: DashboardContext, claims: SessionClaims): void {
  const nowSeconds = Math.floor(ctx.now().getTime() / 1000);
  request.log.info(
    {
      code: "SESSION_IDLE",
      user: claims.sub,
      sid: claims.sid,
      idleSeconds: nowSeconds - (claims.act ?? claims.iat),
      limitSeconds: ctx.config.dashboardSessionIdleSeconds,
    },
    "session ended: unused for longer than the idle limit",
  );
  ctx.metrics.actions.inc({ action: "logout", result: "idle" });
}

/**
 * A request whose session is past its lifetime (DASHBOARD_SESSION_TTL_SECONDS, or the shorter one it was issued with),
 * treated as an idle one is (`endIdleSession`): logged with its code, counted as a session ended
 * (`dashboard_actions_total{action="logout",result="expired"}`), its cookie cleared; not for a session logged out
 * before. The browser drops the cookie at its Max-Age by itself, so this is mostly a script's old cookie, a clock that
 * differs, or a lifetime lowered since.
 */
function endExpiredSession(request: FastifyRequest, ctx: DashboardContext, claims: SessionClaims): void {
  const nowSeconds = Math.floor(ctx.now().getTime() / 1000);
  request.log.info(
    {
      code: "SESSION_EXPIRED",
      user: claims.sub,
      sid: claims.sid,
      ageSeconds: nowSeconds - claims.iat,
      limitSeconds: ctx.sessions.lifetimeSeconds(claims),
    },
    "session ended: past its lifetime",
  );
  ctx.metrics.actions.inc({ action: "logout", result: "expired" });
}

/**
 * A request without a live session: a browser's page load is sent to the login (and back); a browser's form post
 * (a mutation accepting text/html) gets a page saying its session ended and nothing was done; anything else —
 * bull-board's client (axios accepts JSON, plain text and any type, never text/html by name), scripts — the JSON 401.
 * Each is refused before the CSRF check and the handler, so nothing is done either way.
 */
function rejectUnauthenticated(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // bull-board's API by its path alone: a page whose query holds "/api/" (a search for a URL) is a page.
  const path = request.url.split("?", 1)[0] ?? "";
  const wantsPage =
    (request.method === "GET" || request.method === "HEAD") && !path.includes("/api/") && wantsHtml(request);
  if (wantsPage) {
    const next = request.url.startsWith("/") ? request.url : "/";
    return reply.redirect(`/login?next=${encodeURIComponent(next)}`, 302);
  }
  if (!SAFE_METHODS.has(request.method) && wantsHtml(request)) return sendSessionEnded(request, reply);
  return reply.code(401).type("application/json").send({ error: "UNAUTHENTICATED", message: "log in first" });
}

/** Metric/audit label of a mutating request: our routes name themselves; bull-board's are derived from the route pattern. */
export function actionName(request: FastifyRequest): string {
  const url = request.routeOptions.url ?? "unmatched";
  const bullBoard =
    /^\/queues(?:-readonly)?\/api\/queues(?:\/:queueName)?(?:\/:jobId)?\/([a-z-]+)(?:\/:queueStatus)?$/.exec(url);
  if (bullBoard) return `queues.${bullBoard[1]}`;
  return url;
}
