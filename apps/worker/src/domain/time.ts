import { WorkerError } from "../errors.ts";

/** China Standard Time (UTC+8, no daylight saving): the zone of every APIv2 timestamp. */
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

/** APIv2 `time_end` (`yyyyMMddHHmmss`) or refund `success_time` (`yyyy-MM-dd HH:mm:ss`), both in UTC+8. */
export function parseChinaTime(value: string, field: string): number {
  const m = /^(\d{4})-?(\d{2})-?(\d{2})[ T]?(\d{2}):?(\d{2}):?(\d{2})$/.exec(value);
  if (!m) throw WorkerError.of("PAYLOAD_INVALID", `${field} is not yyyyMMddHHmmss or yyyy-MM-dd HH:mm:ss`);
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const utc = Date.UTC(y, mo - 1, d, h, mi, s);
  const check = new Date(utc);
  if (check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) {
    throw WorkerError.of("PAYLOAD_INVALID", `${field} is not a valid date`);
  }
  return utc - CST_OFFSET_MS;
}
