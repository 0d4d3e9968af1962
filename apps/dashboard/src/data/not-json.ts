/**
 * Why stored JSON (a job hash's `data`, `opts`, …) cannot be read, for pages and logs: `what` "is not JSON", with the
 * position V8 names. Never the parse error's message itself: V8 quotes the text around the fault ("Unexpected token
 * 'o', ...\"openid\":oUpF8uMu\"... is not valid JSON"), and a job's data holds the body as received — an APIv2
 * payment's `openid` in clear.
 */
export function notJsonReason(what: string, error: unknown): string {
  const position = error instanceof Error ? /\bat position (\d+)\b/.exec(error.message)?.[1] : undefined;
  return position === undefined ? `${what} is not JSON` : `${what} is not JSON (at character ${position})`;
}
