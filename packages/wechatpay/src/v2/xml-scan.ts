import { isNameChar, isNameStartChar, isSpace } from "./xml-chars.ts";
import { decodeXmlText, invalidXml } from "./xml-text.ts";

/**
 * A single forward pass over a flat APIv2 document `<root><a>…</a><b>…</b></root>`, as hostile input.
 *
 * Cost: the cursor only moves forward, and every step (`indexOf` for the end of a text run, comment, CDATA
 * section, processing instruction or attribute value; a character loop for a name or whitespace) reads only what
 * it then moves past, so each character is read a bounded number of times (at most three: scanned, sliced,
 * decoded). Per element the work is a name, a Map lookup and, for a field, one string concatenation per text
 * piece — no tree, no per-node objects. The element cap stops the pass at the first start tag past it, so a refused
 * body costs at most the scan of its first `maxElements` elements, whatever follows. A repeated field, a nested
 * element, a declaration or any syntax error stops it where it stands too.
 *
 * What it accepts is XML 1.0 restricted to what a flat document can hold: before and after the root only
 * whitespace, comments and processing instructions (the XML declaration only at the very start); in the root only
 * fields, whitespace, comments and processing instructions; in a field only text, CDATA, comments and processing
 * instructions (concatenated in document order: text entity-decoded, CDATA verbatim). Attributes are checked for
 * syntax (quoted, no `<`, valid references, no repeats) and ignored. `<!DOCTYPE`, `<!ENTITY` and any other
 * `<!` declaration is refused where it stands, so there is no DTD, no entity definition, no external entity.
 */

const LT = 0x3c; // <
const GT = 0x3e; // >
const SLASH = 0x2f; // /
const BANG = 0x21; // !
const QUESTION = 0x3f; // ?
const EQUALS = 0x3d; // =
const DOUBLE_QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;

/**
 * Attributes allowed in the whole document. WeChat sends none and they are ignored; a few are tolerated (as the
 * parser before this scanner did), thousands in one start tag are junk that would cost a Set entry each.
 */
const MAX_ATTRIBUTES = 32;

/**
 * Names of Object.prototype members (and `prototype`): refused as field names. The result is built with own data
 * properties and cannot pollute a prototype, but a field shadowing `toString` or `hasOwnProperty` breaks callers
 * that use them on it, and the parser this scanner replaced refused them: a refused document beats a field
 * read differently by someone else.
 */
function shadowsObjectPrototype(name: string): boolean {
  return name === "prototype" || Object.hasOwn(Object.prototype, name);
}

export interface ScanLimits {
  /** Start tags allowed in the document, root included; the next one is refused before any of it is read. */
  maxElements: number;
}

/** What the `<` at the cursor starts. */
type Markup = "comment" | "cdata" | "declaration" | "pi" | "end" | "start";

class FlatXmlScan {
  private pos = 0;
  private elements = 0;
  private attributes = 0;
  private readonly fields = new Map<string, string>();

  constructor(
    private readonly text: string,
    private readonly rootName: string,
    private readonly limits: ScanLimits,
  ) {}

  run(): Map<string, string> {
    this.skipMisc();
    if (this.pos >= this.text.length) throw invalidXml("XML is not well-formed: no root element");
    if (!this.atLt()) throw invalidXml("XML is not well-formed: text before the root element");
    const markup = this.markupAt();
    if (markup === "cdata") throw this.notSingleRoot();
    if (markup !== "start") throw invalidXml("XML is not well-formed: an end tag before the root element");
    const root = this.startTag();
    if (root.name !== this.rootName) throw invalidXml(`expected root element <${this.rootName}>, got <${root.name}>`);
    if (!root.empty) this.rootContent();
    this.skipMisc();
    if (this.pos < this.text.length) {
      if (!this.atLt()) throw invalidXml("XML is not well-formed: text after the root element");
      const after = this.markupAt();
      if (after === "start") throw invalidXml("XML is not well-formed: more than one root element");
      if (after === "cdata") throw this.notSingleRoot();
      throw invalidXml("XML is not well-formed: an end tag after the root element");
    }
    return this.fields;
  }

  private notSingleRoot() {
    return invalidXml(`expected a single <${this.rootName}> element and nothing else`);
  }

  /** Whitespace, comments and processing instructions outside the root. */
  private skipMisc(): void {
    for (;;) {
      this.skipSpace();
      if (!this.atLt()) return;
      const markup = this.markupAt();
      if (markup === "comment") this.skipComment();
      else if (markup === "pi") this.skipProcessingInstruction();
      else if (markup === "declaration") throw this.declaration();
      else return;
    }
  }

  /** Fields up to `</root>`; between them only whitespace (as String#trim sees it), comments and PIs. */
  private rootContent(): void {
    for (;;) {
      const lt = this.nextLt(this.rootName);
      if (lt > this.pos && this.text.slice(this.pos, lt).trim() !== "") throw this.textOutsideFields();
      this.pos = lt;
      switch (this.markupAt()) {
        case "end":
          this.endTag(this.rootName);
          return;
        case "start":
          this.field();
          break;
        case "comment":
          this.skipComment();
          break;
        case "pi":
          this.skipProcessingInstruction();
          break;
        case "cdata":
          throw this.textOutsideFields();
        case "declaration":
          throw this.declaration();
      }
    }
  }

  private textOutsideFields() {
    return invalidXml(`<${this.rootName}> contains text outside of any field`);
  }

  /** One field: its start tag, then text and CDATA pieces up to its end tag; a child element is refused. */
  private field(): void {
    const { name, empty } = this.startTag();
    if (shadowsObjectPrototype(name)) throw invalidXml(`element name <${name}> is not allowed`);
    if (this.fields.has(name)) throw invalidXml(`field <${name}> appears more than once`);
    let value = "";
    while (!empty) {
      const lt = this.nextLt(name);
      if (lt > this.pos) value += decodeXmlText(this.text.slice(this.pos, lt));
      this.pos = lt;
      const markup = this.markupAt();
      if (markup === "end") {
        this.endTag(name);
        break;
      }
      if (markup === "cdata") value += this.cdataSection();
      else if (markup === "comment") this.skipComment();
      else if (markup === "pi") this.skipProcessingInstruction();
      else if (markup === "declaration") throw this.declaration();
      else {
        this.countStartTag();
        this.pos += 1;
        throw invalidXml(`<${name}> contains the element <${this.name("element")}>: APIv2 fields are flat`);
      }
    }
    this.fields.set(name, value);
  }

  /** The next `<` from the cursor; its absence means the element `name` is never closed. */
  private nextLt(name: string): number {
    const lt = this.text.indexOf("<", this.pos);
    if (lt === -1) throw invalidXml(`XML is not well-formed: <${name}> is not closed`);
    return lt;
  }

  private atLt(): boolean {
    return this.text.charCodeAt(this.pos) === LT;
  }

  /** Classifies the markup at the cursor, which is on a `<`. */
  private markupAt(): Markup {
    const { text, pos } = this;
    const next = text.charCodeAt(pos + 1);
    if (next === BANG) {
      if (text.startsWith("<!--", pos)) return "comment";
      if (text.startsWith("<![CDATA[", pos)) return "cdata";
      return "declaration";
    }
    if (next === QUESTION) return "pi";
    if (next === SLASH) return "end";
    if (isNameStartChar(next)) return "start";
    throw invalidXml(`XML is not well-formed: "<" not followed by a name at character ${pos}`);
  }

  private declaration() {
    const what = /^<!([A-Za-z]*)/.exec(this.text.slice(this.pos, this.pos + 20))?.[1] || "declaration";
    return invalidXml(`<!${what}> is not allowed (no DTD, no entity declarations)`);
  }

  /** Moves the cursor past the next `close` at or after `from`; returns where `close` starts. */
  private skipTo(close: string, from: number, what: string): number {
    const at = this.text.indexOf(close, from);
    if (at === -1) throw invalidXml(`XML is not well-formed: unterminated ${what}`);
    this.pos = at + close.length;
    return at;
  }

  private skipComment(): void {
    this.skipTo("-->", this.pos + "<!--".length, "comment");
  }

  /** `<![CDATA[…]]>`: its content, verbatim. */
  private cdataSection(): string {
    const start = this.pos + "<![CDATA[".length;
    return this.text.slice(start, this.skipTo("]]>", start, "CDATA section"));
  }

  /** `<?target?>` or `<?target S …?>`; the XML declaration (`<?xml …?>`) only at the very start of the document. */
  private skipProcessingInstruction(): void {
    const start = this.pos;
    this.pos += 2;
    const target = this.name("processing instruction");
    if (target === "xml" && start !== 0) {
      throw invalidXml("XML is not well-formed: the XML declaration is allowed only at the start");
    }
    if (!this.text.startsWith("?>", this.pos) && !this.skipSpace()) {
      throw invalidXml(`XML is not well-formed: malformed processing instruction <?${target}`);
    }
    this.skipTo("?>", this.pos, "processing instruction");
  }

  /** Counts the start tag at the cursor; the one past the cap is refused before anything of it is read. */
  private countStartTag(): void {
    this.elements += 1;
    if (this.elements > this.limits.maxElements) {
      throw invalidXml(
        `more than ${this.limits.maxElements} elements (start tag at character ${this.pos}): no APIv2 notification has that many fields`,
      );
    }
  }

  /** `<name (S attr="…")* S? (> | />)`, counted against the element cap first. */
  private startTag(): { name: string; empty: boolean } {
    this.countStartTag();
    this.pos += 1;
    const name = this.name("element");
    let names: Set<string> | undefined;
    for (;;) {
      const spaced = this.skipSpace();
      const c = this.text.charCodeAt(this.pos);
      if (c === GT) {
        this.pos += 1;
        return { name, empty: false };
      }
      if (c === SLASH && this.text.charCodeAt(this.pos + 1) === GT) {
        this.pos += 2;
        return { name, empty: true };
      }
      if (!spaced) throw invalidXml(`XML is not well-formed: malformed start tag <${name}>`);
      this.attributes += 1;
      if (this.attributes > MAX_ATTRIBUTES) {
        throw invalidXml(`more than ${MAX_ATTRIBUTES} attributes: APIv2 notifications carry none`);
      }
      const attribute = this.name("attribute");
      names ??= new Set();
      if (names.has(attribute)) throw invalidXml(`XML is not well-formed: attribute ${attribute} repeated`);
      names.add(attribute);
      this.attributeValue(attribute);
    }
  }

  /** `S? = S? "…"` or `'…'`: no `<` inside, references valid. The value itself is not used. */
  private attributeValue(attribute: string): void {
    this.skipSpace();
    if (this.text.charCodeAt(this.pos) !== EQUALS) {
      throw invalidXml(`XML is not well-formed: attribute ${attribute} has no value`);
    }
    this.pos += 1;
    this.skipSpace();
    const quote = this.text.charCodeAt(this.pos);
    if (quote !== DOUBLE_QUOTE && quote !== SINGLE_QUOTE) {
      throw invalidXml(`XML is not well-formed: attribute ${attribute} is not quoted`);
    }
    const start = this.pos + 1;
    const value = this.text.slice(start, this.skipTo(String.fromCharCode(quote), start, "attribute value"));
    if (value.includes("<")) throw invalidXml(`XML is not well-formed: "<" in attribute ${attribute}`);
    decodeXmlText(value);
  }

  /** `</name S? >`, which must close the element `name`. */
  private endTag(name: string): void {
    this.pos += 2;
    const closing = this.name("end tag");
    this.skipSpace();
    if (this.text.charCodeAt(this.pos) !== GT) {
      throw invalidXml(`XML is not well-formed: malformed end tag </${closing}>`);
    }
    if (closing !== name) throw invalidXml(`XML is not well-formed: <${name}> closed by </${closing}>`);
    this.pos += 1;
  }

  /** The XML name at the cursor, which moves past it. */
  private name(what: string): string {
    const { text } = this;
    const start = this.pos;
    if (!isNameStartChar(text.charCodeAt(start))) {
      throw invalidXml(`XML is not well-formed: ${what} name expected at character ${start}`);
    }
    let end = start + 1;
    while (end < text.length && isNameChar(text.charCodeAt(end))) end++;
    this.pos = end;
    return text.slice(start, end);
  }

  /** Moves past XML whitespace; whether there was any. */
  private skipSpace(): boolean {
    const start = this.pos;
    while (isSpace(this.text.charCodeAt(this.pos))) this.pos++;
    return this.pos > start;
  }
}

/**
 * The fields of the flat document `text` (BOM removed, line ends normalised), in document order; throws XML_INVALID
 * at the first thing that is not well-formed or not flat, at a repeated field, and at the start tag past the cap.
 */
export function scanFlatXml(text: string, rootName: string, limits: ScanLimits): Map<string, string> {
  return new FlatXmlScan(text, rootName, limits).run();
}
