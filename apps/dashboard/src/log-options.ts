import { errWithoutPayerIds, secretRedactPaths, withoutPayerIds } from "@wpn/config";
import { type LoggerOptions, pino } from "pino";
import { CSRF_TOKEN_HEADERS } from "./auth/csrf.ts";

/**
 * The dashboard's pino options (main.ts). Belt and braces: nothing logs these on purpose, but a future
 * `log.info({ req })` must not leak them. The shared lists add the merchant secrets (the keys page reads Merchant rows'
 * apiV2Key), the Redis password ioredis puts on a refused connection's error, and payer ids (the console selects none:
 * data/timeline.ts leaves payerOpenid out), in a logged error's fields too (as `err` or under any other key). The CSRF
 * headers are those the CSRF check reads a token from: a name it accepts is a name redacted.
 */
export function dashboardLoggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { service: "dashboard", pid: process.pid },
    redact: {
      paths: [
        "req.headers.cookie",
        "req.headers.authorization",
        ...CSRF_TOKEN_HEADERS.map((name) => `req.headers["${name}"]`),
        'res.headers["set-cookie"]',
        "password",
        "*.password",
        "passwordHash",
        "*.passwordHash",
        ...secretRedactPaths(),
      ],
      censor: "[redacted]",
    },
    formatters: { log: withoutPayerIds },
    serializers: { err: errWithoutPayerIds(pino.stdSerializers.err) },
  };
}
