// Self only: no CDN, no external fonts (bull-board's page links Google Fonts; this keeps the browser from
// fetching them), no inline scripts. Inline styles are allowed for our pages' <style> and bull-board's React.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * How long a browser that got an answer over HTTPS keeps to HTTPS for this host, seconds (a year). Without it a man in
 * the middle of a later http:// request — a typed name, an old bookmark — keeps the browser on plain HTTP and serves
 * it a login page of their own, collecting the password: the `__Host-` cookies keep the session from them, not that.
 * No `includeSubDomains`: the dashboard speaks for its own host only.
 */
const HSTS_MAX_AGE_SECONDS = 365 * 24 * 3600;

/**
 * The headers every answer of the dashboard carries, routed or not, but `Cache-Control` (`no-store` unless the answer
 * sets its own: app.ts). Strict-Transport-Security when the answer goes out over HTTPS (`https`: as the cookies'
 * Secure flag decides); over plain HTTP (development on 127.0.0.1) a browser ignores it anyway.
 */
export function securityHeaders(https: boolean): Record<string, string> {
  return {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    // same-origin: our own requests keep a Referer (a fallback for the origin check), others get none.
    "referrer-policy": "same-origin",
    ...(https ? { "strict-transport-security": `max-age=${HSTS_MAX_AGE_SECONDS}` } : {}),
  };
}
