import { WechatPayError, type WechatPayErrorCode } from "./errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/**
 * Decodes UTF-8 strictly (invalid sequences are an error, not U+FFFD) and parses JSON. `__proto__` keys
 * are dropped by the reviver so that a later spread/merge of the result can never touch a prototype.
 */
export function parseJsonBytes(input: Buffer | string, code: WechatPayErrorCode, what: string): unknown {
  let text: string;
  if (typeof input === "string") {
    text = input;
  } else {
    try {
      text = utf8.decode(input);
    } catch (cause) {
      throw new WechatPayError(code, `${what} is not valid UTF-8`, { cause });
    }
  }
  if (text.trim() === "") throw new WechatPayError(code, `${what} is empty`);
  try {
    return JSON.parse(text, (key, value) => (key === "__proto__" ? undefined : value));
  } catch (cause) {
    throw new WechatPayError(code, `${what} is not JSON`, { cause });
  }
}

/** Formats zod issues compactly for error messages: `resource.nonce: expected string`. */
export function describeIssues(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>): string {
  return issues
    .slice(0, 5)
    .map((issue) => `${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`)
    .join("; ");
}
