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
 * Buffer, a Date) are not entered: pino's serializers turn them into what they log, after this has run, so the `err`
 * serializer censors its own output (errWithoutPayerIds). A walk rather than pino `redact`
 * paths: fast-redact needs a path per name and depth, and its wildcard paths cost every line (these names down to two
 * levels took the worker's `applied` line from about 10 to 22 µs), where this walk costs next to nothing on a line of
 * scalars. Child bindings do not pass through it (pino formats only the root's): they are ids.
 */
export function withoutPayerIds(object: Record<string, unknown>): Record<string, unknown> {
  return censored(object, 0, undefined) as Record<string, unknown>;
}

/**
 * pino's `serializers.err` of every app: `serialize` (pino.stdSerializers.err) with the walk of withoutPayerIds over
 * what it made. pino applies its serializers after formatters.log, and that one does not enter an Error; the
 * serializer copies the error's enumerable own fields (an `openid`, a decrypted `transaction` with its payer) into an
 * object of its own prototype, and so the Errors among them and an AggregateError's `errors` (its `aggregateErrors`).
 * Those objects are recognised by the prototype of the one it returns, not by a name; a value it returns as it came
 * (not an error) was walked already. The serialized error sits one level below the log object: the same depth bound.
 */
export function errWithoutPayerIds<E>(serialize: (err: E) => unknown): (err: E) => unknown {
  return (err) => {
    const serialized = serialize(err);
    if (serialized === err || typeof serialized !== "object" || serialized === null) return serialized;
    return censored(serialized, 1, Object.getPrototypeOf(serialized) as object | null);
  };
}

/**
 * `value` censored as withoutPayerIds says; objects whose prototype is `enter` (a serialized error's) are walked like
 * plain ones. A copy keeps the original's prototype (a serialized error its `raw`); its fields are writable, as a
 * spread's are, whatever the original's (a frozen object).
 */
function censored(value: unknown, depth: number, enter: object | null | undefined): unknown {
  if (typeof value !== "object" || value === null || depth > MAX_DEPTH) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const out = censored(item, depth + 1, enter);
      if (out === item) return;
      copy ??= [...value];
      copy[i] = out;
    });
    return copy ?? value;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null && proto !== enter) return value;
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const item = record[key];
    const out = PAYER_FIELDS.has(key) && item !== undefined ? PAYER_CENSOR : censored(item, depth + 1, enter);
    if (out === item) continue;
    copy ??=
      proto === Object.prototype
        ? { ...record }
        : (Object.assign(Object.create(proto as object | null), record) as Record<string, unknown>);
    copy[key] = out;
  }
  return copy ?? value;
}
