/**
 * Whether decodeURIComponent takes `text`: every `%` begins an escape of a UTF-8 sequence. A malformed escape is a
 * plain "no" (URIError), nothing to log.
 */
export function decodesAsUriComponent(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}
