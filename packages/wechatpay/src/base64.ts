/**
 * Strict base64 (standard alphabet, RFC 4648 §4). `Buffer.from(s, "base64")` silently skips characters
 * outside the alphabet, so a probe value or a mangled header would decode to *something*; we want such input
 * to be reported, not guessed at. Padding is optional (some encoders drop it) but, when present, must be
 * correct; the length must be a valid base64 length.
 */
const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

export function isStrictBase64(text: string): boolean {
  return STRICT_BASE64.test(text);
}

/** Decodes strict base64; returns `undefined` (never throws) when `text` is not strict base64. */
export function decodeStrictBase64(text: string): Buffer | undefined {
  if (!isStrictBase64(text)) return undefined;
  return Buffer.from(text, "base64");
}
