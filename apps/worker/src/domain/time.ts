import { WorkerError } from "../errors.ts";

/** China Standard Time (UTC+8, no daylight saving): the zone of every APIv2 timestamp, ms. */
const CST_OFFSET_MS = 8 * 3600 * 1000;

/** RFC 3339 with an offset, as APIv3 writes `success_time` / `create_time` (`2018-06-08T10:34:56+08:00`). ms since the epoch. */
export function parseRfc3339(value: string, field: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))$/.exec(value);
  if (!m) throw WorkerError.of("PAYLOAD_INVALID", `${field} is not an RFC 3339 time with an offset`);
  // Date.parse rolls impossible dates over (2018-02-30 → March 2) and reads 24:00:00 as the next midnight: the
  // components must come back unchanged, and the time and offset be within a day.
  const n = (group: number) => Number(m[group] ?? 0);
  const [y, mo, d] = [n(1), n(2), n(3)] as const;
  const day = new Date(Date.UTC(y, mo - 1, d));
  const sameDay = day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d;
  // hours, minutes, seconds; offset hours and minutes
  if (!sameDay || n(4) > 23 || n(5) > 59 || n(6) > 59 || n(9) > 23 || n(10) > 59) {
    throw WorkerError.of("PAYLOAD_INVALID", `${field} is not a valid time`);
  }
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw WorkerError.of("PAYLOAD_INVALID", `${field} is not a valid time`);
  return ms;
}

/** APIv2 payment `time_end`: exactly `yyyyMMddHHmmss` (protocol notes §2.1). ASCII digits only (`\d` without the u flag). */
const COMPACT = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/;
/** APIv2 refund `success_time`: exactly `yyyy-MM-dd HH:mm:ss` (protocol notes §2.3). */
const SPACED = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/;

/** APIv2 payment `time_end`, Beijing time (UTC+8): exactly `yyyyMMddHHmmss`, a real date and time. ms since the epoch. */
export function parseCompactChinaTime(value: string, field: string): number {
  return chinaTime(COMPACT.exec(value), field, "yyyyMMddHHmmss");
}

/** APIv2 refund `success_time`, Beijing time (UTC+8): exactly `yyyy-MM-dd HH:mm:ss`, a real date and time. ms since the epoch. */
export function parseSpacedChinaTime(value: string, field: string): number {
  return chinaTime(SPACED.exec(value), field, "yyyy-MM-dd HH:mm:ss");
}

function chinaTime(m: RegExpExecArray | null, field: string, shape: string): number {
  if (!m) throw WorkerError.of("PAYLOAD_INVALID", `${field} is not ${shape}`);
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  // setUTCFullYear, not Date.UTC, which reads years 0–99 as 1900–1999; a date it rolls over (31 February → 3 March)
  // comes back with other components.
  const at = new Date(0);
  at.setUTCFullYear(y, mo - 1, d);
  const sameDay = at.getUTCFullYear() === y && at.getUTCMonth() === mo - 1 && at.getUTCDate() === d;
  // No hour 24, no leap second.
  if (!sameDay || h > 23 || mi > 59 || s > 59) throw WorkerError.of("PAYLOAD_INVALID", `${field} is not a valid time`);
  at.setUTCHours(h, mi, s, 0);
  return at.getTime() - CST_OFFSET_MS;
}
