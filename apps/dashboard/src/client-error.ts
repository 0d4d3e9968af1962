import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyBaseLogger } from "fastify";
import type { DashboardMetrics } from "./metrics.ts";
import { securityHeaders } from "./security-headers.ts";

/** The `method` and `route` labels of requests Node refused before Fastify saw them (the method is not known). */
export const CLIENT_ERROR_LABELS = { method: "(unknown)", route: "(http)" } as const;

const CLIENT_ERRORS = {
  REQUEST_TIMEOUT: { status: 408, message: "The request was not received in time: send it whole, without pauses." },
  HEADERS_TOO_LARGE: { status: 431, message: "The request's headers are too large." },
  HTTP_INVALID: { status: 400, message: "The request is not valid HTTP." },
} as const;

/**
 * Node's 'clientError' handler (Fastify's `clientErrorHandler` option): requests Node refuses before Fastify routes
 * them — the request bound passed (a stalled or trickled request, 408), headers too large (431), malformed HTTP (400).
 * No hook runs for them, and Fastify's default answered its own bare JSON, logged at trace level and uncounted; here
 * each is answered like any other dashboard refusal — its stable code as `{ error, message }` with the security
 * headers of every answer (HSTS when the setting makes cookies Secure: no request tells whether a proxy spoke HTTPS) —,
 * logged once at warn and counted (`CLIENT_ERROR_LABELS`). JSON: the request's Accept is not known here.
 */
export function createClientErrorHandler(
  logger: FastifyBaseLogger,
  metrics: DashboardMetrics,
  https: boolean,
): (error: NodeJS.ErrnoException, socket: Duplex) => void {
  return (error, socket) => {
    // A client that hung up: nothing to answer and nothing wrong on either side.
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    const code = clientErrorCode(error.code);
    const { status, message } = CLIENT_ERRORS[code];
    metrics.requests.inc({ ...CLIENT_ERROR_LABELS, status: String(status) });
    logger.warn({ code, status, cause: error.code }, "request refused before routing");
    if (socket.writable) {
      const body = JSON.stringify({ error: code, message });
      const headers = {
        ...securityHeaders(https),
        "cache-control": "no-store",
        "content-type": "application/json; charset=utf-8",
        "content-length": String(Buffer.byteLength(body)),
        connection: "close",
      };
      const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
      socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head.join("")}\r\n${body}`);
    }
    socket.destroy(error);
  };
}

function clientErrorCode(nodeCode: string | undefined): keyof typeof CLIENT_ERRORS {
  if (nodeCode === "ERR_HTTP_REQUEST_TIMEOUT") return "REQUEST_TIMEOUT";
  if (nodeCode === "HPE_HEADER_OVERFLOW") return "HEADERS_TOO_LARGE";
  return "HTTP_INVALID";
}
