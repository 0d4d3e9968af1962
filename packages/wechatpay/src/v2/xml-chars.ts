/**
 * Character classes of XML 1.0 by UTF-16 code unit, without regular expressions or allocation: the scanner asks
 * once per character of every name and every run of whitespace, so these are on its hot path.
 * Names are XML 1.0 NameStartChar / NameChar within the Basic Multilingual Plane, as fast-xml-parser (this
 * package's parser before the scanner) accepted them.
 */

/** Non-ASCII NameStartChar ranges (inclusive pairs). */
const NAME_START_RANGES = [
  0xc0, 0xd6, 0xd8, 0xf6, 0xf8, 0x2ff, 0x370, 0x37d, 0x37f, 0x1fff, 0x200c, 0x200d, 0x2070, 0x218f, 0x2c00, 0x2fef,
  0x3001, 0xd7ff, 0xf900, 0xfdcf, 0xfdf0, 0xfffd,
];
/** Non-ASCII NameChar ranges beyond NameStartChar. */
const NAME_EXTRA_RANGES = [0xb7, 0xb7, 0x300, 0x36f, 0x203f, 0x2040];

function inRanges(c: number, ranges: readonly number[]): boolean {
  for (let i = 0; i < ranges.length; i += 2) {
    if (c >= (ranges[i] as number) && c <= (ranges[i + 1] as number)) return true;
  }
  return false;
}

export function isNameStartChar(c: number): boolean {
  if (c < 0x80) return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x3a;
  return inRanges(c, NAME_START_RANGES);
}

export function isNameChar(c: number): boolean {
  if (c < 0x80) return isNameStartChar(c) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e;
  return inRanges(c, NAME_START_RANGES) || inRanges(c, NAME_EXTRA_RANGES);
}

/** XML's S: space, tab, line feed, carriage return. */
export function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}
