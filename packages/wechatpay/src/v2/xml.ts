import { XMLParser, XMLValidator } from "fast-xml-parser";
import { WechatPayError } from "../errors.ts";

/**
 * APIv2 XML, parsed as hostile input. APIv2 documents are flat: `<xml><field>value</field>…</xml>` (refund
 * `req_info` plaintext: `<root>…</root>`), values usually in CDATA. We return exactly that shape, as strings
 * (`00123` stays `00123`: values are signed as text, and amounts are re-checked by the caller).
 *
 * Defences, each tested:
 * - size is checked on the bytes before anything is decoded (default 64 KiB, real notifications are ~1 KiB);
 * - any `<!…>` markup other than CDATA and comments (DOCTYPE, ENTITY, ELEMENT…) is rejected before parsing,
 *   so there is no DTD, no entity definition, no external entity, no entity bomb;
 * - the parser runs with entity processing off; we decode only the five predefined XML entities and
 *   numeric character references ourselves, and reject any other `&name;` (undeclared = not well-formed);
 * - nesting depth is capped (default 8) and fields with child elements are rejected;
 * - a field that appears twice is rejected rather than resolved (which copy was signed?);
 * - element names that shadow Object.prototype members (__proto__, constructor, toString, …) are rejected;
 * - invalid UTF-8 is rejected instead of being replaced by U+FFFD.
 */

export interface V2XmlLimits {
  /** Maximum document size in bytes. Default 64 KiB. */
  maxBytes?: number;
  /** Maximum element nesting depth (root = 1). Default 8. */
  maxDepth?: number;
}

/** Also the workers' limit for a queued APIv2 body: INGRESS_BODY_LIMIT_BYTES (@wpn/config) may not exceed it. */
export const DEFAULT_V2_MAX_BYTES = 64 * 1024;
export const DEFAULT_V2_MAX_DEPTH = 8;

const TEXT = "#text";
// "#" cannot start an XML name, so no element can collide with these property names.
const CDATA = "#cdata";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function invalid(message: string, cause?: unknown): WechatPayError {
  return new WechatPayError("XML_INVALID", message, cause === undefined ? undefined : { cause });
}

/** Markup whose content is skipped whole when looking for declarations: it may contain `<!` as text. */
const SKIPPED_MARKUP: readonly (readonly [open: string, close: string])[] = [
  ["<![CDATA[", "]]>"],
  ["<!--", "-->"],
  ["<?", "?>"],
];

/**
 * Rejects `<!` constructs other than `<![CDATA[…]]>` and `<!--…-->`. Walks the markup in document order and
 * skips over CDATA, comments and processing instructions, so that their *content* may mention `<!DOCTYPE`
 * without being mistaken for markup — and cannot hide one either (a `<![CDATA[` inside a processing
 * instruction is text, not the start of a section that would swallow a DOCTYPE after it).
 */
function rejectDeclarations(text: string): void {
  let i = text.indexOf("<");
  while (i !== -1) {
    let next = i + 1;
    const skipped = SKIPPED_MARKUP.find(([open]) => text.startsWith(open, i));
    if (skipped) {
      const end = text.indexOf(skipped[1], i + skipped[0].length);
      if (end === -1) return; // unterminated: not well-formed, the validator reports it
      next = end + skipped[1].length;
    } else if (text.startsWith("<!", i)) {
      const what = /^<!([A-Za-z]*)/.exec(text.slice(i, i + 20))?.[1] || "declaration";
      throw invalid(`<!${what}> is not allowed (no DTD, no entity declarations)`);
    }
    i = text.indexOf("<", next);
  }
}

const PREDEFINED: Readonly<Record<string, string>> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

/**
 * Decodes the text content of an element: the five predefined entities and character references of
 * XML 1.0 §4.1/§4.6. There is no DTD here, so any other `&name;` is undeclared (XML_INVALID), and so is a
 * bare `&` (the validator already refuses it; this function does not rely on that).
 */
export function decodeXmlText(text: string): string {
  if (!text.includes("&")) return text;
  return text.replace(/&([^;&\s]*);?/g, (whole, name: string) => {
    if (!whole.endsWith(";")) throw invalid(`bare "&" in text: ${whole.slice(0, 20)}`);
    if (Object.hasOwn(PREDEFINED, name)) return PREDEFINED[name] as string;
    const numeric = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(name);
    if (numeric) {
      const code = numeric[1] !== undefined ? Number.parseInt(numeric[1], 16) : Number(numeric[2]);
      const isXmlChar =
        code === 0x9 ||
        code === 0xa ||
        code === 0xd ||
        (code >= 0x20 && code <= 0xd7ff) ||
        (code >= 0xe000 && code <= 0xfffd) ||
        (code >= 0x10000 && code <= 0x10ffff);
      if (!isXmlChar) throw invalid(`character reference ${whole} is not an XML character`);
      return String.fromCodePoint(code);
    }
    throw invalid(`undeclared entity ${whole} (entities are not supported)`);
  });
}

type OrderedNode = Record<string, unknown>;

function elementName(node: OrderedNode): string | undefined {
  for (const key of Object.keys(node)) {
    if (key !== ":@" && key !== TEXT && key !== CDATA) return key;
  }
  return undefined;
}

/** With `preserveOrder`, an element node is `{ name: [children…] }`, a CDATA node `{ "#cdata": [{ "#text": … }] }`. */
function childrenOf(node: OrderedNode, key: string): OrderedNode[] {
  return node[key] as OrderedNode[];
}

/** Text of a leaf element: text (entity-decoded) and CDATA (verbatim) concatenated in document order. */
function leafValue(name: string, children: OrderedNode[]): string {
  let value = "";
  for (const child of children) {
    if (TEXT in child) value += decodeXmlText(String(child[TEXT]));
    else if (CDATA in child)
      value += childrenOf(child, CDATA)
        .map((c) => String(c[TEXT]))
        .join("");
    else throw invalid(`<${name}> contains the element <${elementName(child)}>: APIv2 fields are flat`);
  }
  return value;
}

function isBlankText(node: OrderedNode): boolean {
  return TEXT in node && Object.keys(node).length === 1 && String(node[TEXT]).trim() === "";
}

function decodeInput(input: Buffer | string, maxBytes: number): string {
  if (typeof input !== "string" && !(input instanceof Uint8Array)) {
    throw invalid("XML input must be a string or a Buffer");
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
      throw invalid("XML body is not valid UTF-8", cause);
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
  const maxDepth = limits?.maxDepth ?? DEFAULT_V2_MAX_DEPTH;
  const text = decodeInput(input, maxBytes);
  if (text.trim() === "") throw invalid("XML body is empty");
  rejectDeclarations(text);

  const validation = XMLValidator.validate(text);
  if (validation !== true) {
    throw invalid(`XML is not well-formed: ${validation.err.msg} (line ${validation.err.line})`);
  }
  const parser = new XMLParser({
    preserveOrder: true, // keeps duplicates and text/CDATA order visible to us instead of merging them
    ignoreAttributes: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    parseTagValue: false, // every value stays a string
    trimValues: false, // values are signed verbatim
    processEntities: false,
    htmlEntities: false,
    cdataPropName: CDATA,
    maxNestedTags: maxDepth,
    // The parser refuses __proto__/constructor/prototype itself; for the other Object.prototype names
    // (toString, hasOwnProperty, …) its default is to *rename* the element to "__toString". A silently
    // renamed field is worse than a refused document, so refuse.
    onDangerousProperty: (name: string) => {
      throw new Error(`element name <${name}> is not allowed`);
    },
  });
  let document: OrderedNode[];
  try {
    document = parser.parse(text) as OrderedNode[];
  } catch (cause) {
    throw invalid(`XML could not be parsed: ${(cause as Error).message}`, cause);
  }

  // The validator guarantees exactly one root element; CDATA or comments may still stand beside it.
  const [root, ...extra] = document.filter((node) => !isBlankText(node));
  if (root === undefined || extra.length > 0) throw invalid(`expected a single <${rootName}> element and nothing else`);
  const name = elementName(root);
  if (name !== rootName) throw invalid(`expected root element <${rootName}>, got <${name}>`);

  const fields = new Map<string, string>();
  for (const child of childrenOf(root, rootName)) {
    if (isBlankText(child)) continue;
    const field = elementName(child);
    if (field === undefined) throw invalid(`<${rootName}> contains text outside of any field`);
    if (fields.has(field)) throw invalid(`field <${field}> appears more than once`);
    fields.set(field, leafValue(field, childrenOf(child, field)));
  }
  // Object.fromEntries defines own data properties, so a field named "__proto__" cannot touch a prototype.
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
