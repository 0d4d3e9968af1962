/** How JSON.stringify writes a lone surrogate (lower-case hex), and the lone surrogate itself. */
const LONE_SURROGATE_ESCAPE = /\\ud[89a-f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * `records` as the text of ONE json bind parameter, for batch statements that read it with
 * `json_to_recordset` (a fixed SQL text whatever the batch size, so it stays one prepared statement).
 *
 * A lone UTF-16 surrogate is sent by pg as U+FFFD (Node's UTF-8 encoding) when it is a parameter of its own,
 * but JSON carries it as a \udXXX escape that PostgreSQL refuses (22P02): it is replaced the way the parameter
 * path does. JSON.stringify escapes nothing else in that range, so a miss of the quick test is exact; a hit may
 * be an escaped backslash followed by "ud8", which only costs the second pass.
 */
export function jsonParam(records: readonly object[]): string {
  const text = JSON.stringify(records);
  if (!LONE_SURROGATE_ESCAPE.test(text)) return text;
  return JSON.stringify(records, (_key, value: unknown) =>
    typeof value === "string" ? value.replace(LONE_SURROGATE, "\ufffd") : value,
  );
}
