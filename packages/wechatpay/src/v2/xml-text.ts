import { WechatPayError } from "../errors.ts";

/** The one error of APIv2 XML that is not about size: malformed, declarations, entities, shape, too many elements. */
export function invalidXml(message: string, cause?: unknown): WechatPayError {
  return new WechatPayError("XML_INVALID", message, cause === undefined ? undefined : { cause });
}

const SEMICOLON = 0x3b;
const AMPERSAND = 0x26;
const HASH = 0x23;
const LOWER_X = 0x78;

function isXmlChar(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

/**
 * The characters of UTF-16 text that XML 1.0's Char production (§2.2) excludes: C0 controls other than tab, LF and
 * CR, and U+FFFE / U+FFFF. (Unpaired surrogates are excluded too, but a body decoded from bytes cannot hold one: the
 * decoder refuses invalid UTF-8.) One native scan with a plain character class, about a nanosecond a character.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is what this pattern is for.
const NOT_XML_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/**
 * Refuses a document holding a character XML does not allow, wherever it is: in a field, or in a comment, processing
 * instruction, attribute or whitespace that no APIv2 sign covers. Such a document is not XML (every SDK's parser
 * refuses it), and its U+0000 would reach Redis with the acknowledged notification and then fail PostgreSQL's text
 * columns, which refuse it, at the worker.
 */
export function refuseNonXmlChars(text: string): void {
  const found = NOT_XML_CHAR.exec(text);
  if (found !== null) {
    const code = text.charCodeAt(found.index).toString(16).toUpperCase().padStart(4, "0");
    throw invalidXml(`character U+${code} at character ${found.index} is not allowed in XML`);
  }
}

/** Value of one hex or decimal digit, or -1. */
function digit(c: number, hex: boolean): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (!hex) return -1;
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/** `&#…;` between `start` (the `#`) and `end` (the `;`): 1–6 hex digits after `x`, or 1–7 decimal digits. */
function characterReference(text: string, start: number, end: number): string {
  const hex = text.charCodeAt(start + 1) === LOWER_X;
  const first = start + (hex ? 2 : 1);
  const count = end - first;
  if (count < 1 || count > (hex ? 6 : 7)) throw undeclared(text, start, end);
  let code = 0;
  for (let i = first; i < end; i++) {
    const d = digit(text.charCodeAt(i), hex);
    if (d === -1) throw undeclared(text, start, end);
    code = code * (hex ? 16 : 10) + d;
  }
  if (!isXmlChar(code)) {
    throw invalidXml(`character reference ${text.slice(start - 1, end + 1)} is not an XML character`);
  }
  return String.fromCodePoint(code);
}

function undeclared(text: string, start: number, end: number) {
  return invalidXml(`undeclared entity ${text.slice(start - 1, end + 1)} (entities are not supported)`);
}

/** What the reference between `start` (after `&`) and `end` (the `;`) stands for; any other name is undeclared. */
function resolveReference(text: string, start: number, end: number): string {
  if (text.charCodeAt(start) === HASH) return characterReference(text, start, end);
  switch (text.slice(start, end)) {
    case "lt":
      return "<";
    case "gt":
      return ">";
    case "amp":
      return "&";
    case "quot":
      return '"';
    case "apos":
      return "'";
    default:
      throw undeclared(text, start, end);
  }
}

/**
 * Decodes the text content of an element: the five predefined entities and character references of
 * XML 1.0 §4.1/§4.6. There is no DTD here, so any other `&name;` is undeclared (XML_INVALID), and so is a
 * bare `&` (one not ended by `;` before the next `&`, whitespace or the end of the text).
 * One pass, linear in the text: each character is looked at once, plus one output piece per reference.
 */
export function decodeXmlText(text: string): string {
  let amp = text.indexOf("&");
  if (amp === -1) return text;
  let out = "";
  let copied = 0;
  while (amp !== -1) {
    let end = amp + 1;
    for (; end < text.length; end++) {
      const c = text.charCodeAt(end);
      if (c === SEMICOLON || c === AMPERSAND || c <= 0x20) break;
    }
    if (text.charCodeAt(end) !== SEMICOLON) throw invalidXml(`bare "&" in text: ${text.slice(amp, amp + 20)}`);
    out += text.slice(copied, amp) + resolveReference(text, amp + 1, end);
    copied = end + 1;
    amp = text.indexOf("&", copied);
  }
  return out + text.slice(copied);
}
