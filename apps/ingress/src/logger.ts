import { errWithoutPayerIds, secretRedactPaths, withoutPayerIds } from "@wpn/config";
import { type DestinationStream, type Logger, pino } from "pino";

/**
 * The ingress's JSON logs (stdout unless `destination` is given). Nothing logs request headers, bodies or key
 * material on purpose; the redaction list is belt and braces for an object logged whole by mistake (an error that
 * carries the request, a merchant row): signatures, bodies and the merchant's secrets never reach the log, at the top
 * level or one level down, nor the arguments of a command Redis refused (REDIS_URL's password, for the handshake:
 * @wpn/config's secretRedactPaths), nor a payer's id in any form (an APIv2 payment's fields are clear text:
 * withoutPayerIds, which enters an Error logged under another key than `err` too, and errWithoutPayerIds for the `err`
 * error's fields). Public keys and certificates are not secret.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "ingress", pid: process.pid },
    redact: {
      paths: ["req.headers", "headers", "body", "*.body", "*.signature", ...secretRedactPaths()],
      remove: true,
    },
    formatters: { log: withoutPayerIds },
    serializers: { err: errWithoutPayerIds(pino.stdSerializers.err) },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
