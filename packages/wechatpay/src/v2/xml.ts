import { WechatPayError } from "../errors.ts";
import { scanFlatXml } from "./xml-scan.ts";
import { invalidXml, refuseNonXmlChars } from "./xml-text.ts";

export { decodeXmlText } from "./xml-text.ts";

/**
 * APIv2 XML, parsed as hostile input. APIv2 documents are flat: `<xml><field>value</field>…</xml>` (refund
 * `req_info` plaintext: `<root>…</root>`), values usually in CDATA. We return exactly that shape, as strings
 * (`00123` stays `00123`: values are signed as text, and amounts are re-checked by the caller).
 *
 * The body arrives before anything authenticates it (an APIv2 sign is computed over the parsed fields), so parsing
 * must cost about what a genuine notification costs, whatever anyone sends. Defences, each tested:
 * - size is checked on the bytes before anything is decoded (default 64 KiB, real notifications are ~1 KiB);
 * - one forward pass (xml-scan.ts), linear in the size, that stops at the first thing it refuses;
 * - at most 256 elements, root included (`maxElements`): the start tag past the cap is refused where it stands,
 *   before the rest of the body is read. A payment notification has at most 33 named fields (2 always, 24 more on
 *   success, 4 for partners, 3 that WxJava also maps; docs/wechatpay-protocol.md §2.1) plus 3 per coupon
 *   (`coupon_type_$n`, `coupon_id_$n`, `coupon_fee_$n`); a refund notification 8 outside `req_info` and 13 inside.
 *   256 leaves room for 70 coupons; 64 KiB of junk holds thousands of elements, each a little work;
 * - any `<!…>` markup other than CDATA and comments (DOCTYPE, ENTITY, ELEMENT…) is refused where it stands,
 *   so there is no DTD, no entity definition, no external entity, no entity bomb;
 * - only the five predefined XML entities and numeric character references are decoded, any other `&name;` is
 *   refused (undeclared = not well-formed);
 * - fields are flat: the first child element of a field is refused (so nesting costs nothing);
 * - attributes are ignored, and more than 32 in a document refused (WeChat sends none);
 * - a field that appears twice is refused rather than resolved (which copy was signed?), at its second start tag;
 * - element names that shadow Object.prototype members (__proto__, constructor, toString, …) are refused;
 * - invalid UTF-8 is refused instead of being replaced by U+FFFD, and so is any character XML 1.0 does not allow
 *   (U+0000 and the other C0 controls but tab, LF and CR; U+FFFE, U+FFFF), wherever it is: a NUL in a comment of a
 *   signed notification would reach Redis and then fail PostgreSQL's text columns at the worker.
 */

export interface V2XmlLimits {
  /** Maximum document size in bytes. Default 64 KiB. */
  maxBytes?: number;
  /** Maximum number of elements, root included. Default 256 (see above for why). */
  maxElements?: number;
}

/** Also the workers' limit for a queued APIv2 body: INGRESS_BODY_LIMIT_BYTES (@wpn/config) may not exceed it. */
export const DEFAULT_V2_MAX_BYTES = 64 * 1024;
export const DEFAULT_V2_MAX_ELEMENTS = 256;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeInput(input: Buffer | string, maxBytes: number): string {
  if (typeof input !== "string" && !(input instanceof Uint8Array)) {
    throw invalidXml("XML input must be a string or a Buffer");
  }
  const size = typeof input === "string" ? Buffer.byteLength(input, "utf8") : input.length;
  if (size > maxBytes) throw new WechatPayError("XML_TOO_LARGE", `XML body has ${size} bytes, limit ${maxBytes}`);
  let text: string;
  if (typeof input === "string") {
    text = input;
  } else {
    try {
      text = utf8.decode(input);
    } catch (cause) {
      throw invalidXml("XML body is not valid UTF-8", cause);
    }
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Parses a flat document `<rootName><a>…</a><b>…</b></rootName>` into `{ a, b }` (all strings).
 * Shared by `parseV2Xml` (root `xml`) and the refund `req_info` plaintext (root `root`).
 */
export function parseFlatXml(input: Buffer | string, rootName: string, limits?: V2XmlLimits): Record<string, string> {
  const maxBytes = limits?.maxBytes ?? DEFAULT_V2_MAX_BYTES;
  const maxElements = limits?.maxElements ?? DEFAULT_V2_MAX_ELEMENTS;
  const decoded = decodeInput(input, maxBytes);
  if (decoded.trim() === "") throw invalidXml("XML body is empty");
  // XML 1.0 §2.11: a CR LF pair or a lone CR is read as LF everywhere, CDATA included.
  const text = decoded.includes("\r") ? decoded.replace(/\r\n?/g, "\n") : decoded;
  const fields = scanFlatXml(text, rootName, { maxElements });
  // Only once the scan accepted the document, so that what the scan refuses (the start tag past the element cap, …)
  // is refused the same whatever follows it. Positions are those of the body as decoded.
  refuseNonXmlChars(decoded);
  // Object.fromEntries defines own data properties, so a field named "__proto__" could not touch a prototype.
  return Object.fromEntries(fields);
}

/** Parses an APIv2 notification body `<xml>…</xml>`. Throws XML_TOO_LARGE or XML_INVALID. */
export function parseV2Xml(input: Buffer | string, limits?: V2XmlLimits): Record<string, string> {
  return parseFlatXml(input, "xml", limits);
}

const XML_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** `<![CDATA[…]]>`, splitting any `]]>` inside the value so it cannot end the section early. */
export function cdata(value: string): string {
  return `<![CDATA[${value.replaceAll("]]>", "]]]]><![CDATA[>")}]]>`;
}

/** Builds a flat APIv2 document with CDATA values (in insertion order), as WeChat sends them. */
export function buildFlatXml(fields: Record<string, string>, rootName: string, separator = ""): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (!XML_NAME.test(name)) throw new RangeError(`"${name}" is not a usable XML element name`);
    parts.push(`<${name}>${cdata(String(value))}</${name}>`);
  }
  return `<${rootName}>${separator}${parts.map((p) => p + separator).join("")}</${rootName}>`;
}

/** `<xml><k><![CDATA[v]]></k>…</xml>`, for the simulator and tests. */
export function buildV2Xml(fields: Record<string, string>): string {
  return buildFlatXml(fields, "xml");
}
