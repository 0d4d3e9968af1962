import type { FastifyReply, FastifyRequest } from "fastify";

/** The session cookie (session.ts), HttpOnly. */
export const SESSION_COOKIE = "wpn_session";
/** The CSRF secret (csrf.ts), HttpOnly and signed. */
export const CSRF_SECRET_COOKIE = "_csrf";
/**
 * A CSRF token readable by scripts, for bull-board's client (csrf.ts). Never prefixed: axios reads it by this exact
 * name. It holds a token, not a secret, and a token is only good with this browser's secret and session cookies: one
 * written into the cookie by someone else is refused like any foreign token.
 */
export const XSRF_COOKIE = "XSRF-TOKEN";

/** The cookies that get the `__Host-` prefix when secure. */
export type HostCookie = typeof SESSION_COOKIE | typeof CSRF_SECRET_COOKIE;

const HOST_PREFIX = "__Host-";

/**
 * Names and attributes of the dashboard's cookies, one answer at a time.
 *
 * Secure: always with DASHBOARD_COOKIE_SECURE=true; otherwise whenever the request came over HTTPS — a TLS socket, or
 * `X-Forwarded-Proto: https` from a DASHBOARD_TRUST_PROXY proxy (Fastify's `request.protocol`, which @fastify/cookie's
 * `secure: "auto"` reads too). Without it, a deployment behind a TLS-terminating proxy that forgot the setting had its
 * session cookie sent in clear to any http:// URL of the host (cookies ignore the scheme and the port: the proxy's
 * port-80 redirect gets it too). Plain HTTP (development on 127.0.0.1) still gets cookies without Secure, which a
 * browser would not store there.
 *
 * When Secure, the session and CSRF secret cookies are named `__Host-<name>` (Path=/, no Domain: every cookie here
 * has both). A browser stores a `__Host-` cookie only from a secure page of this very host, so a sibling subdomain
 * (`Domain=` the parent) or a man in the middle of an http:// request to the host cannot plant or overwrite one, as
 * they can a plain cookie; and on such a request the plain names are not read at all. Over plain HTTP the names stay
 * plain: a browser refuses `__Host-` without Secure.
 */
export class DashboardCookies {
  constructor(private readonly secureConfigured: boolean) {}

  /** Whether the answer to `request` sets Secure cookies (see the class). */
  secure(request: FastifyRequest): boolean {
    return this.secureConfigured || request.protocol === "https";
  }

  /** The name `cookie` has in this request and its answer. */
  name(request: FastifyRequest, cookie: HostCookie): string {
    return this.secure(request) ? `${HOST_PREFIX}${cookie}` : cookie;
  }

  /** The raw value the request carries under this request's name of `cookie` (signed cookies still signed). */
  read(request: FastifyRequest, cookie: HostCookie): string | undefined {
    return request.cookies[this.name(request, cookie)];
  }

  /** Sets an HttpOnly, SameSite=Lax, Path=/ cookie; `maxAge` in seconds, absent for a browser-session cookie. */
  set(
    reply: FastifyReply,
    cookie: HostCookie,
    value: string,
    options: { maxAge?: number; signed?: boolean } = {},
  ): void {
    reply.setCookie(this.name(reply.request, cookie), value, {
      ...this.attributes(reply.request),
      httpOnly: true,
      ...options,
    });
  }

  /** Sets the XSRF-TOKEN cookie: readable by scripts, otherwise as `set`. */
  setReadable(reply: FastifyReply, value: string): void {
    reply.setCookie(XSRF_COOKIE, value, { ...this.attributes(reply.request), httpOnly: false });
  }

  /**
   * Tells the browser to drop the cookie, with the attributes it was set with: a browser refuses a `Set-Cookie` of a
   * `__Host-` name without Secure and Path=/, the one that deletes it included.
   */
  clear(reply: FastifyReply, cookie: HostCookie | typeof XSRF_COOKIE): void {
    const name = cookie === XSRF_COOKIE ? cookie : this.name(reply.request, cookie);
    reply.clearCookie(name, this.attributes(reply.request));
  }

  private attributes(request: FastifyRequest) {
    return { path: "/", sameSite: "lax", secure: this.secure(request) } as const;
  }
}
