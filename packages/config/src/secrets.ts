/**
 * Names under which the system's processes hold merchant secrets: the Merchant table's columns, the worker's key
 * sets and the ingress's settings. Every app's logger redacts them at the top level and one level down, so an object
 * logged whole by mistake (a merchant row, a key set, the settings) prints none of them.
 */
export const SECRET_FIELDS = [
  "apiV3Key",
  "apiV3KeyPrevious",
  "previousApiV3Key",
  "apiV2Key",
  "apiV2KeyPrevious",
  "previousApiV2Key",
  "apiPrivateKeyPem",
  "merchantPrivateKeyPem",
] as const;

/**
 * Fields of a logged error (under `err`, which pino's error serializer copies with the error's own properties) that
 * carry secrets: ioredis sets `command` ({ name, args }) on the error of every command Redis refused, and the
 * arguments of a connection's handshake (`HELLO 3 AUTH <user> <password>`, `AUTH <password>`) are REDIS_URL's
 * password — a Redis answering WRONGPASS had it logged at every reconnect —, those of a BullMQ script a job's data.
 * The command's name stays.
 */
const ERROR_SECRET_PATHS = ["err.command.args"] as const;

/** pino `redact.paths`: each of SECRET_FIELDS at the top level and one level down, and ERROR_SECRET_PATHS. */
export function secretRedactPaths(): string[] {
  return [...SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]), ...ERROR_SECRET_PATHS];
}
