import type { FastifyInstance, FastifyReply } from "fastify";
import { SESSION_COOKIE } from "../auth/cookies.ts";
import { clearCsrfCookies, rotateCsrfSecret } from "../auth/csrf.ts";
import { authenticate, idleSession } from "../auth/guard.ts";
import { type HashCost, hashCostOf, hashPassword, verifyPassword } from "../auth/password.ts";
import type { AttemptDecision } from "../auth/rate-limit.ts";
import { recordLogin, revokeSession, revokeUncheckedSession } from "../auth/revocations.ts";
import type { DashboardContext } from "../context.ts";
import { html } from "../views/html.ts";
import { bareLayout } from "../views/layout.ts";
import { safeNext } from "./next.ts";
import { sendError, sendHtml, wantsHtml } from "./page.ts";

/** Retry-After of a login refused because Redis does not answer (s): a guess at a short outage, not a promise. */
const LIMIT_UNAVAILABLE_RETRY_SECONDS = 30;

const DUMMY_PASSWORD = "not a real password, only used to spend the same time";

/**
 * What a login verifies besides (or instead of) the user's own hash, so that response times do not tell which names
 * exist, whatever cost each user's hash has (costs can be raised per user). Every attempt verifies two hashes at
 * once, on the thread pool: a known name its own and `strongest` (a dummy at the highest configured cost); an unknown
 * name `strongest` and `likeUser(name)` (a dummy at the cost of a user picked by the name, so the same name always
 * costs the same). Both paths then do the same work — the same number of checks, at costs drawn from the users' — also
 * when attempts arrive together and queue for the pool.
 */
export interface LoginDummies {
  strongest: string;
  likeUser(name: string): string;
}

export function loginDummies(users: DashboardContext["users"]): LoginDummies {
  const byCost = new Map<string, string>();
  const dummyAt = (cost: HashCost | undefined) => {
    const key = cost ? `${cost.N}.${cost.r}.${cost.p}` : "default";
    let hash = byCost.get(key);
    if (hash === undefined) {
      hash = hashPassword(DUMMY_PASSWORD, cost);
      byCost.set(key, hash);
    }
    return hash;
  };
  const costs = [...users.values()].map((user) => hashCostOf(user.passwordHash));
  let strongest: HashCost | undefined;
  for (const c of costs)
    if (c && (!strongest || c.N * c.r * c.p > strongest.N * strongest.r * strongest.p)) strongest = c;
  const perUser = costs.map(dummyAt);
  const fallback = dummyAt(strongest);
  return {
    strongest: fallback,
    likeUser(name) {
      let h = 0;
      for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
      return perUser[h % Math.max(1, perUser.length)] ?? fallback;
    },
  };
}

interface LoginBody {
  username?: unknown;
  password?: unknown;
  next?: unknown;
}

export function registerLoginRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  const dummies = loginDummies(ctx.users);
  app.get("/login", { config: { access: "public" } }, async (request, reply) => {
    const { next } = request.query as { next?: unknown };
    if (request.auth) return reply.redirect(safeNext(next), 303);
    return loginPage(reply, { next: safeNext(next) });
  });

  app.post("/login", { config: { access: "public" } }, async (request, reply) => {
    const body = (request.body ?? {}) as LoginBody;
    const next = safeNext(body.next);
    const ip = request.ip;
    // Counted as a failure before the (slow, awaited) password check, in the same Redis script as the limit's check,
    // so that attempts sent in parallel (to any replica) see each other in the limit; a success takes it back.
    let decision: AttemptDecision;
    try {
      decision = await ctx.loginLimiter.attempt(ip);
    } catch (error) {
      // Fail closed: without Redis the limit cannot be kept, and an unlimited login is worse than none for a while.
      request.log.error(
        { err: error, code: "LOGIN_LIMIT_UNAVAILABLE", ip },
        "login refused: the limit cannot be checked",
      );
      ctx.metrics.logins.inc({ result: "unavailable" });
      reply.header("retry-after", String(LIMIT_UNAVAILABLE_RETRY_SECONDS));
      const message =
        "Logging in is unavailable: the login limit cannot be checked (Redis does not answer). Try again shortly.";
      // A browser gets its form back (name kept) to try again from; scripts get the JSON error with its code.
      if (!wantsHtml(request)) return sendError(request, reply, 503, "LOGIN_LIMIT_UNAVAILABLE", message);
      const username = typeof body.username === "string" ? body.username.trim() : "";
      return loginPage(reply, { next, username, error: message }, 503);
    }
    if ("retryAfterSeconds" in decision) {
      const retryAfter = decision.retryAfterSeconds;
      ctx.metrics.logins.inc({ result: "rate_limited" });
      request.log.warn({ ip }, "login rate limited");
      reply.header("retry-after", String(retryAfter));
      return loginPage(reply, { next, error: `Too many failed attempts. Try again in ${retryAfter} s.` }, 429);
    }
    const { attempt } = decision;
    const username = typeof body.username === "string" ? body.username.trim() : "";
    const password = typeof body.password === "string" ? body.password : "";
    const user = ctx.users.get(username);
    // Two checks for every attempt, known name or not (see loginDummies).
    const [ok] = await Promise.all([
      verifyPassword(password, user?.passwordHash ?? dummies.likeUser(username)),
      verifyPassword(password, dummies.strongest),
    ]);
    if (!user || !ok) {
      ctx.metrics.logins.inc({ result: "failure" });
      // The name is logged only when it is a configured user: people type passwords into the name field.
      request.log.warn({ ip, user: user ? user.name : "(unknown)" }, "login failed");
      // The typed name comes back whether or not it exists: the page must not tell which names do.
      return loginPage(reply, { next, username, error: "Wrong name or password." }, 401);
    }
    try {
      await ctx.loginLimiter.recordSuccess(attempt);
    } catch (error) {
      // The password was right: the login goes on, its attempt still counted as a failure until the window passes.
      request.log.warn({ err: error, code: "LOGIN_LIMIT_UNAVAILABLE", ip }, "could not take back the login attempt");
    }
    const { value, claims } = ctx.sessions.issue(user);
    // The session this browser held ends here, as by its logout: a copy of its cookie (stolen, left on a shared
    // machine) must not outlive the login that replaced it. Taken from the cookie, not `request.auth`: on this public
    // route a logout check that failed leaves `auth` unset, and the revocation's own write tells whether it was live.
    // A cookie that went idle too: only this copy is idle, one taken from the browser and used since is not.
    const previous = authenticate(request, ctx) ?? idleSession(request, ctx);
    // Audited before the cookie is set, with the old session's revocation: a login that cannot be audited, or cannot
    // end the session the browser held, does not happen (see recordLogin).
    const endedPrevious = await recordLogin(
      ctx.db.prisma,
      { actor: user.name, role: user.role, action: "login", detail: { ip, sid: claims.sid } },
      previous
        ? {
            claims: previous.claims,
            logout: {
              actor: previous.user.name,
              role: previous.user.role,
              action: "logout",
              // As a logout's row, and the session that replaced it (its login row has that sid).
              detail: { ip, sid: previous.claims.sid, replacedBy: claims.sid },
            },
          }
        : undefined,
      ctx.now(),
    );
    // Counted as the logout it is (the same labels as POST /logout's), one for each `logout` row: the metric and the
    // audit log agree on how many sessions were ended. The row's `replacedBy` tells the two kinds apart.
    if (endedPrevious) ctx.metrics.actions.inc({ action: "logout", result: "ok" });
    ctx.cookies.set(reply, SESSION_COOKIE, value, { maxAge: ctx.sessions.maxAgeSeconds(claims) });
    // A new session, a new CSRF secret: none the browser held before the login (the login page's, one planted by
    // someone else) stays with the session. The tokens are bound to the session cookie besides (csrf.ts).
    rotateCsrfSecret(reply, ctx);
    ctx.metrics.logins.inc({ result: "success" });
    request.log.info({ user: user.name, role: user.role }, "login");
    return reply.redirect(next, 303);
  });

  // CSRF is checked as for any mutation (root preHandler), live session or not.
  app.post("/logout", { config: { access: "logout" } }, async (request, reply) => {
    const auth = request.auth;
    // No live session (logged out already, elsewhere; expired): nothing to revoke or audit — its logout row, if it
    // was logged out, exists — only the browser's dead cookie to clear; but an idle one is ended (below).
    if (auth) {
      // Revoked for every replica together with its audit row (both or neither); the cookie is cleared only after.
      // The session id and address, as its login row has them, so the two rows can be matched.
      await revokeSession(
        ctx.db.prisma,
        auth.claims,
        {
          actor: auth.user.name,
          role: auth.user.role,
          action: "logout",
          detail: { ip: request.ip, sid: auth.claims.sid },
        },
        ctx.now(),
      );
      ctx.metrics.actions.inc({ action: "logout", result: "ok" });
    } else {
      // A cookie that went idle (a page left open past the limit, then its Log out): refused everywhere, but a copy of
      // it used since (taken from this browser) would go on working until the lifetime ends. Ended here like a live
      // one, with its `logout` row — unless it was logged out already.
      const idle = idleSession(request, ctx);
      const ended =
        idle !== null &&
        (await revokeUncheckedSession(
          ctx.db.prisma,
          idle.claims,
          {
            actor: idle.user.name,
            role: idle.user.role,
            action: "logout",
            detail: { ip: request.ip, sid: idle.claims.sid, idle: true },
          },
          ctx.now(),
        ));
      if (ended) ctx.metrics.actions.inc({ action: "logout", result: "ok" });
    }
    ctx.cookies.clear(reply, SESSION_COOKIE);
    clearCsrfCookies(reply, ctx);
    return reply.redirect("/login", 303);
  });
}

function loginPage(
  reply: FastifyReply,
  state: { next: string; username?: string; error?: string },
  status = 200,
): FastifyReply {
  const token = reply.generateCsrf();
  return sendHtml(
    reply,
    bareLayout(
      "Log in",
      html`<div class="card">
<h1>wechatpay-notify</h1>
<p class="muted">Operations console. Log in to continue.</p>
${state.error ? html`<div class="flash bad" role="alert">${state.error}</div>` : ""}
<form method="post" action="/login">
  <input type="hidden" name="_csrf" value="${token}">
  <input type="hidden" name="next" value="${state.next}">
  <label>Name <input name="username" autocomplete="username" required value="${state.username ?? ""}" autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Log in</button>
</form>
</div>`,
    ),
    status,
  );
}
