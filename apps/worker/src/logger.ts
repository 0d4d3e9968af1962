import { errWithoutPayerIds, secretRedactPaths, withoutPayerIds } from "@wpn/config";
import { type DestinationStream, type Logger, pino } from "pino";

/**
 * JSON logs on stdout. Every job's lines carry `notificationId` and `outTradeNo` (child loggers in the
 * stage runner). Payer ids and key material are never passed to the logger; the redaction list is a second line of
 * defence for objects logged whole by mistake: a merchant row or a key set (their secrets, at the top level or one
 * level down), the notification `body`, and a decrypted transaction, its payer, APIv2 fields or payment facts (every
 * form of payer id — openid, sp_openid, sub_openid, payerOpenid — and `payer` whole, down to four levels, in arrays
 * too, and in an Error logged under any key but `err` or inside an object: @wpn/config's withoutPayerIds; in the `err`
 * error's fields too: errWithoutPayerIds, pino's `err` serializer censored, since pino serializes after
 * formatters.log). `destination` defaults to stdout.
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
      paths: ["body", "*.body", ...secretRedactPaths()],
      censor: "[redacted]",
    },
    formatters: { log: withoutPayerIds },
    serializers: { err: errWithoutPayerIds(pino.stdSerializers.err) },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
