/** What a printed or logged URL shows in place of a password. */
export const PASSWORD_PLACEHOLDER = "<password>";

/**
 * `query` (a URL's query without its `?`) with the value of every parameter whose name holds "password" (libpq's
 * password=, sslpassword=) replaced by PASSWORD_PLACEHOLDER: messages quoting DATABASE_URL back are printed and logged,
 * onto terminals, CI logs and issue reports. The one rule for the config's messages and the scripts' (database-errors).
 */
export function withoutQueryPasswords(query: string): string {
  return query
    .split("&")
    .map((param) => {
      const name = param.split("=", 1)[0] ?? "";
      return /password/i.test(name) ? `${name}=${PASSWORD_PLACEHOLDER}` : param;
    })
    .join("&");
}
