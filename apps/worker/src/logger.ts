import { secretRedactPaths } from "@wpn/config";
import { type DestinationStream, type Logger, pino } from "pino";

/**
 * JSON logs on stdout. Every job's lines carry `notificationId` and `outTradeNo` (child loggers in the
 * stage runner). Payer data (openid) and key material are never passed to the logger; the redaction list is
 * a second line of defence for objects logged whole by mistake (a merchant row, a key set), at the top level or one
 * level down. `destination` defaults to stdout.
 */
export function createLogger(
  level: string,
  base: Record<string, unknown> = {},
  destination?: DestinationStream,
): Logger {
  const options = {
    level,
    base: { service: "wpn-worker", pid: process.pid, ...base },
    redact: {
      paths: ["payerOpenid", "*.payerOpenid", "openid", "*.openid", "body", "*.body", ...secretRedactPaths()],
      censor: "[redacted]",
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
