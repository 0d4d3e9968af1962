/**
 * Strict base64 (standard alphabet, RFC 4648 §4). `Buffer.from(s, "base64")` silently skips characters
 * outside the alphabet, so a probe value or a mangled header would decode to *something*; we want such input
 * to be reported, not guessed at. Padding is optional (some encoders drop it) but, when present, must be
 * correct; the length must be a valid base64 length.
 */
const EQUALS = 0x3d;

/** 1 for the 64 characters of the standard alphabet, by char code (checked per character: no regex). */
const ALPHABET = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") ALPHABET[c.charCodeAt(0)] = 1;

/**
 * Same language as /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/ (a property test
 * holds the two equal), as one loop over char codes: this runs on every notification's 344-character signature,
 * where the regex cost several µs.
 */
export function isStrictBase64(text: string): boolean {
  const length = text.length;
  let end = length;
  while (end > 0 && length - end < 2 && text.charCodeAt(end - 1) === EQUALS) end--;
  const padding = length - end;
  const tail = end % 4;
  // Data length mod 4 may be 0, 2 or 3; "==" only after 2 trailing characters, "=" only after 3.
  if (tail === 1) return false;
  if (padding > 0 && padding !== 4 - tail) return false;
  for (let i = 0; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code >= 128 || ALPHABET[code] !== 1) return false;
  }
  return true;
}

/** Decodes strict base64; returns `undefined` (never throws) when `text` is not strict base64. */
export function decodeStrictBase64(text: string): Buffer | undefined {
  if (!isStrictBase64(text)) return undefined;
  return Buffer.from(text, "base64");
}
