/**
 * Names under which the system's processes hold merchant secrets: the Merchant table's columns, the worker's key
 * sets and the ingress's settings. Both apps' loggers redact them at the top level and one level down, so an object
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

/** pino `redact.paths` for SECRET_FIELDS: each name at the top level and one level down. */
export function secretRedactPaths(): string[] {
  return SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]);
}
