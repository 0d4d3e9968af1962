import { WechatPayError, type WechatPayErrorCode } from "./errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/**
 * Decodes UTF-8 strictly (invalid sequences are an error, not U+FFFD) and parses JSON. `__proto__` keys
 * are dropped by a reviver so that a later spread/merge of the result can never touch a prototype. A reviver
 * makes JSON.parse several times slower, and this runs twice per notification in the workers, so it is used
 * only when the text could contain such a key: literally, or spelled with a `\u` escape in any character.
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
    if (!text.includes("__proto__") && !text.includes("\\u")) return JSON.parse(text);
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
