import fastifyCsrf from "@fastify/csrf-protection";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { DashboardContext } from "../context.ts";
import { SAFE_METHODS } from "./guard.ts";
import { cookieSecure } from "./session.ts";

/** Readable (not HttpOnly) cookie holding a CSRF token; bull-board's axios client echoes it as X-XSRF-TOKEN. */
export const XSRF_COOKIE = "XSRF-TOKEN";

/**
 * CSRF protection for every mutating request (POST, PUT, PATCH, DELETE), on the root instance so it covers
 * our forms and bull-board's API alike. Two independent checks, both required:
 *
 * 1. Same origin: the `Origin` header (browsers send it on every non-GET request), or failing that the
 *    `Referer`, must name this host. A request with neither is refused.
 * 2. A token (@fastify/csrf-protection): the secret lives in a signed HttpOnly cookie `_csrf`; forms carry the
 *    token in a hidden `_csrf` field. bull-board's UI (axios) cannot be taught a form field, but axios copies
 *    the `XSRF-TOKEN` cookie into an `X-XSRF-TOKEN` header on same-origin requests, so the dashboard sets that
 *    cookie when it serves the bull-board page, and the token check reads the header.
 * The session cookie is also SameSite=Lax, which already keeps other sites' POSTs from carrying it.
 */
export async function installCsrf(app: FastifyInstance, ctx: DashboardContext): Promise<void> {
  await app.register(fastifyCsrf, {
    sessionPlugin: "@fastify/cookie",
    cookieKey: "_csrf",
    cookieOpts: {
      path: "/",
      sameSite: "lax",
      httpOnly: true,
      signed: true,
      secure: cookieSecure(ctx.config.DASHBOARD_COOKIE_SECURE),
    },
  });

  app.addHook("preHandler", (request, reply, done) => {
    if (SAFE_METHODS.has(request.method)) return done();
    const origin = requestOrigin(request);
    if (!origin || origin !== request.host) {
      request.log.warn({ origin: origin ?? null, host: request.host }, "cross-origin or origin-less mutation refused");
      reply.code(403).type("application/json").send({ error: "CSRF_ORIGIN", message: "cross-origin request refused" });
      return;
    }
    app.csrfProtection(request, reply, done);
  });
}

/** host[:port] of the page that sent the request, from Origin or Referer; undefined when neither parses. */
function requestOrigin(request: FastifyRequest): string | undefined {
  const candidate = request.headers.origin ?? request.headers.referer;
  if (!candidate || candidate === "null") return undefined;
  try {
    return new URL(candidate).host;
  } catch {
    return undefined;
  }
}

/** Gives bull-board's client a token to echo (see above). Called when a bull-board page is served. */
export function setXsrfCookie(reply: FastifyReply, secureConfigured: boolean): void {
  reply.setCookie(XSRF_COOKIE, reply.generateCsrf(), {
    path: "/",
    sameSite: "lax",
    httpOnly: false,
    secure: cookieSecure(secureConfigured),
  });
}
