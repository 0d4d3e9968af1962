import { V2_REPLY_CONTENT_TYPE, V3_FAILURE_CONTENT_TYPE, v2Reply, v3FailureBody } from "@wpn/wechatpay";
import type { FastifyReply, FastifyRequest } from "fastify";
import { classifyError, INGRESS_ERRORS, type IngressErrorCode, VERIFICATION_CODES } from "../errors.ts";
import type { IngressMetrics } from "../metrics.ts";

export type Api = "v3" | "v2";

declare module "fastify" {
  interface FastifyRequest {
    /** Outcome code of a notify request (OK, DUPLICATE or an IngressErrorCode), for the request metric. */
    ingressCode: string;
  }
  interface FastifyContextConfig {
    /** Which wire format failures of this route use. */
    api?: Api;
  }
}

/** The `route` label of requests Fastify's router refused before routing them (`handleRouterError`). */
export const ROUTER_ERROR_ROUTE = "(url)";

/** The `route` label of requests for a path (or method) no route serves (`handleNotFound`). */
export const NO_ROUTE = "(none)";

/**
 * Longest part of a request's URL, header value or error detail put in a log line, characters: enough for any notify
 * path, any serial, Request-ID or detail WeChat's requests make, bounded for forged ones — each header of a refused
 * request went into its line whole, the serial twice (field and detail), so a request with 16 KiB of headers wrote
 * more than twice that to the log.
 */
const LOGGED_TEXT_MAX_LENGTH = 200;

/** `text` cut to LOGGED_TEXT_MAX_LENGTH; a header Node joined from several lines (string[]) as one text. */
function clipped(text: string | string[] | undefined): string | undefined {
  if (text === undefined) return undefined;
  return (Array.isArray(text) ? text.join(", ") : text).slice(0, LOGGED_TEXT_MAX_LENGTH);
}

/** The wire format for a request no notify route handled: the path tells (APIv2's paths begin `/notify/v2`). */
export function apiOfUrl(url: string): Api {
  return url.startsWith("/notify/v2") ? "v2" : "v3";
}

/** The FAIL message WeChat records: code first (what operators grep for), then the fixed text. ≤64 chars. */
export function failureMessage(code: IngressErrorCode): string {
  return `${code}: ${INGRESS_ERRORS[code].message}`;
}

/** Writes the failure answer in the route's wire format: APIv3 `{"code":"FAIL",…}` or APIv2 FAIL XML. */
export function writeFailure(reply: FastifyReply, api: Api, code: IngressErrorCode): FastifyReply {
  reply.code(INGRESS_ERRORS[code].status);
  if (api === "v2") return reply.type(V2_REPLY_CONTENT_TYPE).send(v2Reply(false, failureMessage(code)));
  return reply.type(V3_FAILURE_CONTENT_TYPE).send(v3FailureBody(failureMessage(code)));
}

/**
 * The error handler of the notify routes: classifies, logs one line (never the body or signature), counts,
 * answers. 5xx that are not our known outages (INTERNAL) are logged with the stack: they are bugs.
 */
export function handleNotifyError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  api: Api,
  metrics: IngressMetrics,
): FastifyReply {
  const failure = classifyError(error);
  const { code, status } = failure;
  request.ingressCode = code;
  if (VERIFICATION_CODES.has(code)) metrics.verificationFailures.inc({ api, code });
  const fields = {
    code,
    status,
    api,
    route: request.routeOptions.url,
    wechatRequestId: clipped(request.headers["request-id"]),
    serial: clipped(request.headers["wechatpay-serial"]),
  };
  // Details quote header values (serial, timestamp, signature type): clipped like them.
  const detail = clipped(failure.message);
  if (code === "INTERNAL") request.log.error({ ...fields, err: error }, "notification failed");
  else if (status >= 500) {
    const cause = failure.cause instanceof Error ? clipped(failure.cause.message) : undefined;
    request.log.warn({ ...fields, detail, cause }, "notification not accepted");
  } else request.log.warn({ ...fields, detail }, "notification rejected");
  return writeFailure(reply, api, code);
}

/**
 * Fastify's `frameworkErrors` handler: errors its router raises before any route runs — a URL it cannot decode
 * (FST_ERR_BAD_URL, e.g. `/notify/v2/%zz`), a route parameter over maxParamLength — which Fastify would answer in
 * its own JSON, with no code of ours, outside the notify routes' logging and metrics. Answered like any refusal of
 * the path's API (URL_INVALID), logged once at warn, counted under route `(url)`.
 */
export function handleRouterError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  count: (route: string, status: number, code: string) => void,
): FastifyReply {
  const failure = classifyError(error);
  const { code, status } = failure;
  const api = apiOfUrl(request.url);
  count(ROUTER_ERROR_ROUTE, status, code);
  const fields = { code, status, api, route: ROUTER_ERROR_ROUTE, detail: clipped(failure.message) };
  if (code === "INTERNAL") request.log.error({ ...fields, err: error }, "request refused before routing");
  else request.log.warn(fields, "request refused before routing");
  return writeFailure(reply, api, code);
}

/**
 * Fastify's not-found handler: a path or method no route serves. A notify_url configured with a typo or a trailing
 * slash (`/notify/v3/<mchid>/`) meets this on every delivery, and WeChat gives up after 24 h of resends; so it is
 * answered like any refusal of the path's API (NOT_FOUND), logged once at warn with the method and path, and counted
 * under route `(none)` — not silently, as Fastify's default would.
 */
export function handleNotFound(
  request: FastifyRequest,
  reply: FastifyReply,
  count: (route: string, status: number, code: string) => void,
): FastifyReply {
  const code = "NOT_FOUND";
  const { status } = INGRESS_ERRORS[code];
  const api = apiOfUrl(request.url);
  count(NO_ROUTE, status, code);
  request.log.warn(
    {
      code,
      status,
      api,
      route: NO_ROUTE,
      method: request.method,
      url: clipped(request.url),
    },
    "request refused: no such route",
  );
  return writeFailure(reply, api, code);
}
