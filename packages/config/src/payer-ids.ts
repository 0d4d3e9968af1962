/**
 * Names under which a payer's id travels: WeChat's `payer` object of an APIv3 transaction (`openid` of a direct
 * merchant, `sp_openid` and `sub_openid` of a service provider's sub-merchant), APIv2's `openid` and `sub_openid`
 * fields, and the worker's PaymentFacts `payerOpenid`. Nothing logs them on purpose: a log line names a notification
 * by its ids and codes, error messages name fields but not their values, and zod's issues carry no received value.
 */
export const PAYER_FIELDS: ReadonlySet<string> = new Set([
  "payer",
  "openid",
  "sp_openid",
  "sub_openid",
  "payerOpenid",
  "payerSpOpenid",
]);

/** What a log line shows in place of a payer id (or of the whole `payer`). */
export const PAYER_CENSOR = "[redacted]";

/**
 * Levels below the log object that are searched. A decrypted transaction sits one level down (`{ transaction }`:
 * `transaction.payer`), a notification event two (`{ event }`: `event.transaction.payer`); two more are room.
 * It also bounds the walk of an object that refers to itself.
 */
const MAX_DEPTH = 4;

/**
 * pino's errorKey (every app keeps the default): what a log object holds under it at the top level goes to the `err`
 * serializer (errWithoutPayerIds), which needs the Error itself for its type, message and stack.
 */
const ERROR_KEY = "err";

/**
 * `object` with every PAYER_FIELDS entry replaced by PAYER_CENSOR, at any level down to MAX_DEPTH, inside plain objects,
 * arrays and Errors: pino's `formatters.log` of every app, the second line of defence for an object logged whole by
 * mistake (a decrypted transaction, APIv2 fields, payment facts, an error carrying them). What contains no payer field
 * is returned as it is; what does is copied along the path to it, never changed, since the caller still uses it.
 * An Error is entered because pino serializes only the one under ERROR_KEY: one logged under another key (`cause`,
 * `error`) or inside an object is written as JSON.stringify writes it, its enumerable own fields. The Error under
 * ERROR_KEY at the top level is left to the `err` serializer, which censors its own output (errWithoutPayerIds; pino
 * serializes after this has run). Other objects (a Buffer, a Date) are not entered. A walk rather than pino `redact`
 * paths: fast-redact needs a path per name and depth, and its wildcard paths cost every line (these names down to two
 * levels took the worker's `applied` line from about 10 to 22 µs), where this walk costs next to nothing on a line of
 * scalars. Child bindings do not pass through it (pino formats only the root's): they are ids.
 */
export function withoutPayerIds(object: Record<string, unknown>): Record<string, unknown> {
  return censored(object, 0, undefined) as Record<string, unknown>;
}

/**
 * pino's `serializers.err` of every app: `serialize` (pino.stdSerializers.err) with the walk of withoutPayerIds over
 * what it made. pino applies its serializers after formatters.log, which leaves the top-level `err` to it; the
 * serializer copies the error's enumerable own fields (an `openid`, a decrypted `transaction` with its payer) into an
 * object of its own prototype, and so the Errors among them and an AggregateError's `errors` (its `aggregateErrors`).
 * Those objects are recognised by the prototype of the one it returns, not by a name; an Error it copied as it was
 * (inside a plain object among the fields) is entered as withoutPayerIds enters one; a value it returns as it came
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
 * plain ones. A copy of a plain object is a spread; a copy of an Error or of a serialized error keeps the original's
 * prototype and own properties (an Error's message and stack, a serialized error's `raw`), so that it logs as the
 * original would, the censored fields aside. A copy's fields are writable, as a spread's are, whatever the original's
 * (a frozen object).
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
  if (proto !== Object.prototype && proto !== null && proto !== enter && !(value instanceof Error)) return value;
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const item = record[key];
    const out =
      PAYER_FIELDS.has(key) && item !== undefined
        ? PAYER_CENSOR
        : depth === 0 && key === ERROR_KEY && item instanceof Error
          ? item
          : censored(item, depth + 1, enter);
    if (out === item) continue;
    copy ??= proto === Object.prototype ? { ...record } : copyWithPrototype(record);
    Object.defineProperty(copy, key, { value: out, writable: true, enumerable: true, configurable: true });
  }
  return copy ?? value;
}

/** `record`'s own properties (enumerable or not) on an object of its prototype, every one configurable and, when a
 * value, writable: censored redefines the ones it replaces. */
function copyWithPrototype(record: Record<string, unknown>): Record<string, unknown> {
  const descriptors = Object.getOwnPropertyDescriptors(record);
  for (const descriptor of Object.values(descriptors)) {
    descriptor.configurable = true;
    if ("value" in descriptor) descriptor.writable = true;
  }
  return Object.create(Object.getPrototypeOf(record) as object | null, descriptors) as Record<string, unknown>;
}
