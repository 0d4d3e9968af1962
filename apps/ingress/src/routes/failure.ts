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
    wechatRequestId: request.headers["request-id"],
    serial: request.headers["wechatpay-serial"],
  };
  if (code === "INTERNAL") request.log.error({ ...fields, err: error }, "notification failed");
  else if (status >= 500) {
    const cause = failure.cause instanceof Error ? failure.cause.message : undefined;
    request.log.warn({ ...fields, detail: failure.message, cause }, "notification not accepted");
  } else request.log.warn({ ...fields, detail: failure.message }, "notification rejected");
  return writeFailure(reply, api, code);
}
