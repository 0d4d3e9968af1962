import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { V3_FAILURE_CONTENT_TYPE, v3FailureBody } from "@wpn/wechatpay";
import type { Logger } from "pino";
import { INGRESS_ERRORS, type IngressErrorCode } from "./errors.ts";
import { failureMessage } from "./routes/failure.ts";

/** The `route` label of requests Node refused before any route saw them. */
export const CLIENT_ERROR_ROUTE = "(http)";

/**
 * Node's 'clientError' handler (Fastify's `clientErrorHandler` option): requests Node refuses before Fastify routes
 * them — the request bound passed (a trickled request, 408), headers too large (431), malformed HTTP (400). Fastify's
 * default answers in its own JSON and logs at trace level, so a slow-loris or a broken load balancer would be
 * invisible; here each one is logged once at warn, counted under a stable code like every refused notification, and
 * answered `{"code":"FAIL",…}`. The answer is APIv3's: Node calls this with the socket only, before or without a
 * routed request, so the route's wire format is not known (any non-2xx makes WeChat resend either way).
 */
export function createClientErrorHandler(
  logger: Logger,
  count: (route: string, status: number, code: string) => void,
): (error: NodeJS.ErrnoException, socket: Duplex) => void {
  return (error, socket) => {
    // A client that hung up: nothing to answer and nothing wrong on either side.
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    const code = clientErrorCode(error.code);
    const { status } = INGRESS_ERRORS[code];
    count(CLIENT_ERROR_ROUTE, status, code);
    logger.warn({ code, status, cause: error.code, detail: error.message }, "request refused before routing");
    if (socket.writable) {
      const body = v3FailureBody(failureMessage(code));
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${V3_FAILURE_CONTENT_TYPE}\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  };
}

function clientErrorCode(nodeCode: string | undefined): IngressErrorCode {
  if (nodeCode === "ERR_HTTP_REQUEST_TIMEOUT") return "REQUEST_TIMEOUT";
  if (nodeCode === "HPE_HEADER_OVERFLOW") return "HEADERS_TOO_LARGE";
  return "HTTP_INVALID";
}
