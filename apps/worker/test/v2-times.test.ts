import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseCompactChinaTime, parseSpacedChinaTime } from "../src/domain/time.ts";

/**
 * APIv2 times (protocol notes §2.1, §2.3): payment `time_end` is exactly `yyyyMMddHHmmss`, refund `success_time`
 * exactly `yyyy-MM-dd HH:mm:ss`, both Beijing time (UTC+8, no daylight saving). The oracle here is written apart from
 * the parser: a calendar of its own for validity, `Date` arithmetic on the instant for the formatting.
 */

const CST_MS = 8 * 3600 * 1000;
const COMPACT = /^\d{14}$/;
const SPACED = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;

const parsers = [
  { name: "compact (time_end)", parse: parseCompactChinaTime, shape: COMPACT, format: compact },
  { name: "spaced (refund success_time)", parse: parseSpacedChinaTime, shape: SPACED, format: spaced },
] as const;

/** The Beijing wall-clock fields of an instant. */
function wallClock(ms: number) {
  const d = new Date(ms + CST_MS);
  const p = (n: number, width = 2) => String(n).padStart(width, "0");
  return {
    y: p(d.getUTCFullYear(), 4),
    mo: p(d.getUTCMonth() + 1),
    d: p(d.getUTCDate()),
    h: p(d.getUTCHours()),
    mi: p(d.getUTCMinutes()),
    s: p(d.getUTCSeconds()),
  };
}

function compact(ms: number): string {
  const w = wallClock(ms);
  return `${w.y}${w.mo}${w.d}${w.h}${w.mi}${w.s}`;
}

function spaced(ms: number): string {
  const w = wallClock(ms);
  return `${w.y}-${w.mo}-${w.d} ${w.h}:${w.mi}:${w.s}`;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Every whole second whose Beijing wall clock has a four-digit year, 0000-01-01 00:00:00 to 9999-12-31 23:59:59. */
const instantArb = fc
  .integer({
    min: Date.parse("0000-01-01T00:00:00+08:00") / 1000,
    max: Date.parse("9999-12-31T23:59:59+08:00") / 1000,
  })
  .map((seconds) => seconds * 1000);

function rejects(parse: (value: string, field: string) => number, value: string): void {
  expect(() => parse(value, "t"), JSON.stringify(value)).toThrow(
    expect.objectContaining({ code: "PAYLOAD_INVALID", policy: "stop" }),
  );
}

describe("APIv2 times: exact shape, valid calendar, Beijing time", () => {
  it("the documented examples", () => {
    expect(new Date(parseCompactChinaTime("20140903131540", "t")).toISOString()).toBe("2014-09-03T05:15:40.000Z");
    expect(new Date(parseSpacedChinaTime("2017-11-25 15:36:17", "t")).toISOString()).toBe("2017-11-25T07:36:17.000Z");
    // Just after midnight in Beijing is the previous day in UTC.
    expect(new Date(parseCompactChinaTime("20240101000000", "t")).toISOString()).toBe("2023-12-31T16:00:00.000Z");
  });

  it("loose separators, the other field's shape and anything around the time are refused", () => {
    for (const value of [
      "2014-0903 131540",
      "2014-09-03 13:15:40",
      "2014-09-03T13:15:40",
      "201409031315",
      "201409031315400",
      " 20140903131540",
      "20140903131540\n",
      "２０１４０９０３１３１５４０", // full-width digits
      "+2014090313154",
      "",
    ]) {
      rejects(parseCompactChinaTime, value);
    }
    for (const value of [
      "20171125153617",
      "2017-11-25T15:36:17",
      "2017-11-2515:36:17",
      "2017/11/25 15:36:17",
      "2017-11-25  15:36:17",
      "2017-11-25 15:36:17 ",
      "2017-11-25 15:36:17+08:00",
      "2017-11-25 15:36",
      "2017-1-25 15:36:17",
      "",
    ]) {
      rejects(parseSpacedChinaTime, value);
    }
  });

  it("impossible dates and times are refused, not rolled over", () => {
    for (const value of [
      "20140231131540", // 31 February
      "20140229000000", // not a leap year
      "19000229000000", // nor is 1900
      "20140903241540", // hour 24
      "20140903136040",
      "20140903131560", // no leap seconds
      "20141303131540",
      "20140003131540",
      "20140900131540",
      "20140431000000",
    ]) {
      rejects(parseCompactChinaTime, value);
    }
    rejects(parseSpacedChinaTime, "2017-02-29 15:36:17");
    rejects(parseSpacedChinaTime, "2017-11-25 24:00:00");
    expect(new Date(parseCompactChinaTime("20000229235959", "t")).toISOString()).toBe("2000-02-29T15:59:59.000Z");
  });

  for (const { name, parse, shape, format } of parsers) {
    describe(name, () => {
      it("every whole second of years 0000–9999 round-trips", () => {
        fc.assert(fc.property(instantArb, (ms) => parse(format(ms), "t") === ms));
      });

      it("any digits in the shape: accepted exactly when they name a real date and time", () => {
        const fieldsArb = fc.tuple(
          // Years below 100 too, which `Date.UTC` reads as 19xx.
          fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 0, max: 99 })),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
        );
        fc.assert(
          fc.property(fieldsArb, ([y, mo, d, h, mi, s]) => {
            const valid = mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth(y, mo) && h <= 23 && mi <= 59 && s <= 59;
            const p = (n: number) => String(n).padStart(2, "0");
            const value =
              shape === COMPACT
                ? `${String(y).padStart(4, "0")}${p(mo)}${p(d)}${p(h)}${p(mi)}${p(s)}`
                : `${String(y).padStart(4, "0")}-${p(mo)}-${p(d)} ${p(h)}:${p(mi)}:${p(s)}`;
            if (!valid) {
              rejects(parse, value);
              return;
            }
            const expected = new Date(0);
            expected.setUTCFullYear(y, mo - 1, d);
            expected.setUTCHours(h, mi, s, 0);
            expect(parse(value, "t")).toBe(expected.getTime() - CST_MS);
          }),
        );
      });

      it("every string not of the exact shape is refused: arbitrary text and one-character edits of a valid time", () => {
        const edited = fc
          .tuple(instantArb, fc.nat(), fc.string({ unit: "binary", minLength: 1, maxLength: 1 }), fc.nat(2))
          .map(([ms, at, char, edit]) => {
            const valid = format(ms);
            const i = at % (valid.length + 1);
            if (edit === 0) return valid.slice(0, i) + char + valid.slice(i); // insert
            if (edit === 1) return valid.slice(0, i) + valid.slice(i + 1); // delete
            return valid.slice(0, i) + char + valid.slice(i + 1); // replace
          });
        const other = instantArb.map((ms) => (format === compact ? spaced(ms) : compact(ms)));
        const text = fc.oneof(fc.string({ unit: "binary", maxLength: 25 }), edited, other);
        fc.assert(
          fc.property(
            text.filter((value) => !shape.test(value)),
            (value) => rejects(parse, value),
          ),
        );
      });
    });
  }
});
