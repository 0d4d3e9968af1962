/** Where a same-site redirect (a login's `next`) or link back may point: paths of this dashboard only. */

import type { FastifyRequest } from "fastify";

/**
 * Characters a redirect's Location cannot carry as they are: Node refuses a header value outside Latin-1
 * (ERR_INVALID_CHAR, a 500 after the login was audited), and a URL has no raw space or non-ASCII character.
 */
const NOT_IN_URL = /[^\x21-\x7e]/gu;

/** One character as the percent-encoded bytes of its UTF-8 form (a lone surrogate as U+FFFD's). */
const percentEncode = (c: string) =>
  [...Buffer.from(c, "utf8")].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");

/**
 * Only same-site paths: `next` comes from the query string, and an open redirect would help phishing. Returned
 * ready for a Location header: characters outside printable ASCII percent-encoded as UTF-8 (what a browser sends
 * for them), escapes already there (`%xx`) left as they are.
 */
export function safeNext(next: unknown): string {
  if (typeof next !== "string" || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  const hasControl = [...next].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
  if (hasControl || next.startsWith("/login")) return "/";
  return next.replace(NOT_IN_URL, percentEncode);
}

/**
 * The path of the page a refused form was on (routes/stale-form.ts, routes/session-ended.ts), for their links back:
 * from the Referer (our pages send it: Referrer-Policy same-origin) when it names this host, sanitised as a login's
 * `next`; "/" otherwise, and for the login page, which leads to the dashboard anyway.
 */
export function pageOfTheForm(request: FastifyRequest): string {
  const referer = request.headers.referer;
  if (!referer) return "/";
  try {
    const url = new URL(referer);
    return url.host === request.host ? safeNext(`${url.pathname}${url.search}`) : "/";
  } catch {
    return "/";
  }
}
