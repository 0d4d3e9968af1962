import { IngressError } from "../errors.ts";

/**
 * Refuses a request body in any content coding but `identity` (RFC 9110 §8.4: 415 for a coding the server does not
 * apply). Signatures cover the bytes as WeChat sent them, and WeChat sends none: a body a proxy compressed would
 * otherwise be judged as it arrived — 401 SIGNATURE_INVALID for APIv3, counted as a forgery, and 400 XML_INVALID
 * ("not valid UTF-8") for APIv2 — when the fault is the proxy's. Runs before the body is read.
 */
export function refuseContentEncoding(value: string): void {
  for (const coding of value.split(",")) {
    const name = coding.trim().toLowerCase();
    if (name !== "" && name !== "identity") {
      throw new IngressError(
        "UNSUPPORTED_MEDIA_TYPE",
        `Content-Encoding ${JSON.stringify(value.slice(0, 40))} is not supported: the body must be sent as signed`,
      );
    }
  }
}
