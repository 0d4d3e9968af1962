/**
 * Names under which a payer's id travels: WeChat's `payer` object of an APIv3 transaction (`openid` of a direct
 * merchant, `sp_openid` and `sub_openid` of a service provider's sub-merchant), APIv2's `openid` and `sub_openid`
 * fields, and the worker's PaymentFacts `payerOpenid`. Nothing logs them on purpose: a log line names a notification
 * by its ids and codes, error messages name fields but not their values, and zod's issues carry no received value.
 */
export const PAYER_FIELDS: ReadonlySet<string> = new Set(["payer", "openid", "sp_openid", "sub_openid", "payerOpenid"]);

/** What a log line shows in place of a payer id (or of the whole `payer`). */
export const PAYER_CENSOR = "[redacted]";

/**
 * Levels below the log object that are searched. A decrypted transaction sits one level down (`{ transaction }`:
 * `transaction.payer`), a notification event two (`{ event }`: `event.transaction.payer`); two more are room.
 * It also bounds the walk of an object that refers to itself.
 */
const MAX_DEPTH = 4;

/**
 * `object` with every PAYER_FIELDS entry replaced by PAYER_CENSOR, at any level down to MAX_DEPTH, inside plain objects
 * and arrays: pino's `formatters.log` of every app, the second line of defence for an object logged whole by mistake
 * (a decrypted transaction, APIv2 fields, payment facts). What contains no payer field is returned as it is; what
 * does is copied along the path to it, never changed, since the caller still uses it. Other objects (an Error, a
 * Buffer, a Date) are not entered: pino's serializers turn them into what they log. A walk rather than pino `redact`
 * paths: fast-redact needs a path per name and depth, and its wildcard paths cost every line (these names down to two
 * levels took the worker's `applied` line from about 10 to 22 µs), where this walk costs next to nothing on a line of
 * scalars. Child bindings do not pass through it (pino formats only the root's): they are ids.
 */
export function withoutPayerIds(object: Record<string, unknown>): Record<string, unknown> {
  return censored(object, 0) as Record<string, unknown>;
}

function censored(value: unknown, depth: number): unknown {
  if (typeof value !== "object" || value === null || depth > MAX_DEPTH) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const out = censored(item, depth + 1);
      if (out === item) return;
      copy ??= [...value];
      copy[i] = out;
    });
    return copy ?? value;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const item = record[key];
    const out = PAYER_FIELDS.has(key) && item !== undefined ? PAYER_CENSOR : censored(item, depth + 1);
    if (out === item) continue;
    copy ??= { ...record };
    copy[key] = out;
  }
  return copy ?? value;
}
