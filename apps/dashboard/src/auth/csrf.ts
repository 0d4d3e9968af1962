import { randomBytes } from "node:crypto";
import { Tokens } from "@fastify/csrf";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { DashboardContext } from "../context.ts";
import { sendError } from "../routes/page.ts";
import { sendStaleForm } from "../routes/stale-form.ts";
import { CSRF_SECRET_COOKIE, SESSION_COOKIE, XSRF_COOKIE } from "./cookies.ts";
import { SAFE_METHODS } from "./guard.ts";

declare module "fastify" {
  interface FastifyReply {
    /** A CSRF token for this answer's forms (see installCsrf); sets the secret cookie when the request has none. */
    generateCsrf(): string;
  }
  interface FastifyRequest {
    /** The CSRF secret this request's answer leaves in the browser, once chosen (set or rotated here). */
    csrfSecret: string | undefined;
  }
}

/** What a token is bound to when the request carries no session cookie (the login form, a logout after one). */
const NO_SESSION = "no session";

/** Bytes of a CSRF secret (@fastify/csrf's own default). */
const SECRET_BYTES = 18;

/**
 * CSRF protection for every mutating request (POST, PUT, PATCH, DELETE), on the root instance so it covers
 * our forms and bull-board's API alike. Two independent checks, both required:
 *
 * 1. Same origin: the `Origin` header (browsers send it on every non-GET request), or failing that the
 *    `Referer`, must name this host. A request with neither is refused.
 * 2. A token (@fastify/csrf: salted, HMAC-SHA256 under `tokenKey`) made from the browser's CSRF secret — a random value
 *    in a signed HttpOnly cookie (`_csrf`, `__Host-_csrf` when secure: cookies.ts) — AND bound to the browser's session:
 *    the session id of its cookie, which stays the same while the cookie is re-issued for the idle limit (session.ts,
 *    `touch`: a pageful of tokens must outlive that); a cookie the secret did not sign binds as its whole value; "no
 *    session" without one. Forms carry the token in a hidden `_csrf` field. bull-board's
 *    UI (axios) cannot be taught a form field, but axios copies the `XSRF-TOKEN` cookie into an `X-XSRF-TOKEN` header
 *    on same-origin requests, so the dashboard sets that cookie when it serves the bull-board page, and the token
 *    check reads the header.
 *
 * A token is good for one session only. The secret cookie is not: any signed secret the dashboard ever handed out
 * verifies, and one can be planted into a victim's browser (cookie tossing from a sibling subdomain, or a man in the
 * middle of an http:// request, where `__Host-` cannot be had) with a token the attacker got for it. The binding makes
 * such a token worthless once the victim has a session — or a new one: the login form's token, issued without a
 * session, is refused after the login, and a session's tokens after its logout. Login and logout also replace
 * (`rotateCsrfSecret`) or drop (`clearCsrfCookies`) the secret, so none outlives them either way.
 * The session cookie is also SameSite=Lax, which already keeps other sites' POSTs from carrying it.
 */
export function installCsrf(app: FastifyInstance, ctx: DashboardContext, tokenKey: Buffer): void {
  const tokens = new Tokens({ userInfo: true, hmacKey: tokenKey });
  const binding = (request: FastifyRequest) => {
    const cookie = ctx.cookies.read(request, SESSION_COOKIE);
    if (!cookie) return NO_SESSION;
    const sid = ctx.sessions.sessionIdOf(cookie);
    return sid === undefined ? `cookie ${cookie}` : `session ${sid}`;
  };

  app.decorateRequest("csrfSecret", undefined);
  app.decorateReply("generateCsrf", function generateCsrf(this: FastifyReply): string {
    const secret = this.request.csrfSecret ?? requestSecret(this.request, ctx) ?? newSecret(this, ctx);
    return tokens.create(secret, binding(this.request));
  });

  app.addHook("preHandler", async (request, reply) => {
    if (SAFE_METHODS.has(request.method)) return;
    const origin = requestOrigin(request);
    if (!origin || origin !== request.host) {
      request.log.warn({ origin: origin ?? null, host: request.host }, "cross-origin or origin-less mutation refused");
      // A page for a browser (a form behind a proxy that rewrites Host without X-Forwarded-Host), as other refusals.
      return sendError(request, reply, 403, "CSRF_ORIGIN", "cross-origin request refused");
    }
    const secret = requestSecret(request, ctx);
    if (!secret) {
      request.log.warn("mutation without a CSRF secret cookie refused");
      return sendStaleForm(request, reply, "FST_CSRF_MISSING_SECRET", "Missing csrf secret");
    }
    const token = submittedToken(request);
    if (!token || !tokens.verify(secret, token, binding(request))) {
      request.log.warn("mutation with an invalid CSRF token refused");
      return sendStaleForm(request, reply, "FST_CSRF_INVALID_TOKEN", "Invalid csrf token");
    }
  });
}

/** The secret of the request's (signed) secret cookie; undefined without one or when its signature is wrong. */
function requestSecret(request: FastifyRequest, ctx: DashboardContext): string | undefined {
  const signed = ctx.cookies.read(request, CSRF_SECRET_COOKIE);
  if (!signed) return undefined;
  const { valid, value } = request.unsignCookie(signed);
  return valid && value ? value : undefined;
}

/** A fresh secret in the answer's cookie, also for this request's later tokens. */
function newSecret(reply: FastifyReply, ctx: DashboardContext): string {
  const secret = randomBytes(SECRET_BYTES).toString("base64url");
  ctx.cookies.set(reply, CSRF_SECRET_COOKIE, secret, { signed: true });
  reply.request.csrfSecret = secret;
  return secret;
}

/**
 * A new CSRF secret, for a successful login: whatever secret the browser held before (the login page's, or one
 * planted there) is replaced together with the session cookie, and bull-board's token cookie, made from the old one,
 * is dropped (the next board page sets a new one). Called before any token of the answer is made.
 */
export function rotateCsrfSecret(reply: FastifyReply, ctx: DashboardContext): void {
  newSecret(reply, ctx);
  ctx.cookies.clear(reply, XSRF_COOKIE);
}

/** Drops the secret and bull-board's token cookie, for a logout; the login page that follows sets a new secret. */
export function clearCsrfCookies(reply: FastifyReply, ctx: DashboardContext): void {
  ctx.cookies.clear(reply, CSRF_SECRET_COOKIE);
  ctx.cookies.clear(reply, XSRF_COOKIE);
}

/**
 * The headers a mutation may carry its token in, in the order they are read (lower case, as Node names them): the
 * names @fastify/csrf-protection read, and axios's `X-XSRF-TOKEN` (bull-board's client). The logger redacts each one.
 */
export const CSRF_TOKEN_HEADERS = ["csrf-token", "xsrf-token", "x-csrf-token", "x-xsrf-token"] as const;

/** Where a mutation carries its token: the forms' hidden field, or a header (bull-board's client, scripts). */
function submittedToken(request: FastifyRequest): string | undefined {
  const field = (request.body as { _csrf?: unknown } | undefined)?._csrf;
  if (typeof field === "string" && field) return field;
  for (const name of CSRF_TOKEN_HEADERS) {
    const header = request.headers[name];
    if (typeof header === "string" && header) return header;
  }
  return undefined;
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
export function setXsrfCookie(reply: FastifyReply, ctx: DashboardContext): void {
  ctx.cookies.setReadable(reply, reply.generateCsrf());
}
