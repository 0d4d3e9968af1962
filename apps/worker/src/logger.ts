import { type Logger, pino } from "pino";

/**
 * JSON logs on stdout. Every job's lines carry `notificationId` and `outTradeNo` (child loggers in the
 * stage runner). Payer data (openid) and key material are never passed to the logger; the redaction list is
 * a second line of defence for objects logged whole by mistake.
 */
export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: "wpn-worker", pid: process.pid, ...base },
    redact: {
      paths: [
        "payerOpenid",
        "*.payerOpenid",
        "openid",
        "*.openid",
        "body",
        "*.body",
        "apiV3Key",
        "*.apiV3Key",
        "apiV2Key",
        "*.apiV2Key",
      ],
      censor: "[redacted]",
    },
  });
}
