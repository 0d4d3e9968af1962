import { NotificationStatus, type Prisma } from "@wpn/db";
import { hasControlCharacter } from "../input.ts";
import type { DbClient } from "./audit.ts";

export const NOTIFICATION_STATUSES = Object.values(NotificationStatus) as NotificationStatus[];

/** A validated search; every field optional, all given fields must match (AND). */
export interface NotificationSearch {
  /**
   * Free text: matched exactly against id, WeChat's notification id, out_trade_no, transaction_id and out_refund_no,
   * and as WeChat's refund number (refund_id) through the Refund it names.
   */
  q?: string;
  /** The notification id, or WeChat's id of an APIv3 notification (whose notification id is `v3:<mchid>:<WeChat's id>`). */
  id?: string;
  outTradeNo?: string;
  transactionId?: string;
  mchid?: string;
  /** Partner (服务商) mode: the sub-merchant the notification names (`Notification.subMchid`), matched exactly. */
  subMchid?: string;
  status?: NotificationStatus;
  /** receivedAt ≥ from, receivedAt < to. */
  from?: Date;
  to?: Date;
  page: number;
}

export const PAGE_SIZE = 50;
/**
 * Last page a search reads (pages count from 0): its OFFSET is at most MAX_PAGE × PAGE_SIZE = 10 000 rows, which
 * PostgreSQL reads and drops for each request. Unbounded, any viewer could ask for page 999 999 (50 million rows);
 * further back, a time range or another filter finds a notification.
 */
export const MAX_PAGE = 200;
const MAX_TEXT = 128;

/**
 * `YYYY-MM-DD`, optionally followed by `T` or one space and `HH:MM[:SS[.fraction]]` (any number of fraction digits,
 * kept to the millisecond) and then optionally `Z` or `±HH:MM`.
 */
const TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|([+-])(\d{2}):(\d{2}))?)?$/;

/**
 * The instants a search time may name: years 1 to 9999 in UTC. PostgreSQL's timestamp refuses year 0 (22008, a 500
 * before), which the four year digits allow, and an offset can push year 1 or 9999 across either end.
 */
const EARLIEST = Date.parse("0001-01-01T00:00:00.000Z");
const LATEST = Date.parse("9999-12-31T23:59:59.999Z");

/**
 * A search time as an instant. Without an offset it is UTC, as the page says — never the server's zone, which is
 * what `new Date` uses for a date and time without one (and for a space instead of `T`). Calendar fields are
 * checked, not rolled over (no 30 February, no 24:00). Undefined for anything else, and for an instant outside
 * years 1–9999.
 */
export function parseSearchTime(value: string): Date | undefined {
  const m = TIME.exec(value);
  if (!m) return undefined;
  const field = (i: number) => Number(m[i] ?? 0);
  const [year, month, day, hour, minute, second] = [field(1), field(2), field(3), field(4), field(5), field(6)];
  const millis = Number((m[7] ?? "").padEnd(3, "0").slice(0, 3));
  const utc = new Date(Date.UTC(year, month - 1, day, hour, minute, second, millis));
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear does not.
  utc.setUTCFullYear(year);
  const exact =
    utc.getUTCFullYear() === year &&
    utc.getUTCMonth() === month - 1 &&
    utc.getUTCDate() === day &&
    utc.getUTCHours() === hour &&
    utc.getUTCMinutes() === minute &&
    utc.getUTCSeconds() === second;
  const offsetHours = field(10);
  const offsetMinutes = field(11);
  if (!exact || offsetHours > 23 || offsetMinutes > 59) return undefined;
  // Local time = UTC + offset, so the instant is the wall time minus the offset.
  const offsetMs = (m[9] === "-" ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  const instant = utc.getTime() - offsetMs;
  return instant >= EARLIEST && instant <= LATEST ? new Date(instant) : undefined;
}

/**
 * Reads the search form (query string). Values are trimmed; an invalid value is reported, not silently
 * dropped, so an on-call engineer never reads "no results" for a query that was not run — a parameter given twice
 * and a page that is not a number included.
 * Times are `YYYY-MM-DDTHH:MM[:SS[.fff]]` in UTC (what a datetime-local input sends; a space for the `T` and any
 * fraction too), or with an offset (`Z`, `±HH:MM`) as ISO 8601 — see `parseSearchTime`.
 */
export function parseSearch(query: Record<string, unknown>): { search: NotificationSearch; errors: string[] } {
  const errors: string[] = [];
  const text = (key: string, label: string): string | undefined => {
    const value = query[key];
    if (Array.isArray(value)) {
      errors.push(`${label} is given more than once`);
      return undefined;
    }
    if (typeof value !== "string") return undefined;
    const trimmed = value.trim();
    if (trimmed === "") return undefined;
    if (trimmed.length > MAX_TEXT) {
      errors.push(`${label} is longer than ${MAX_TEXT} characters`);
      return undefined;
    }
    if (hasControlCharacter(trimmed)) {
      errors.push(`${label} contains a control character`);
      return undefined;
    }
    return trimmed;
  };
  const time = (key: string, label: string): Date | undefined => {
    const value = text(key, label);
    if (value === undefined) return undefined;
    const date = parseSearchTime(value);
    if (date === undefined) errors.push(`${label} is not a date and time (YYYY-MM-DDTHH:MM, UTC)`);
    return date;
  };
  const statusText = text("status", "Status");
  let status: NotificationStatus | undefined;
  if (statusText !== undefined) {
    if ((NOTIFICATION_STATUSES as string[]).includes(statusText)) status = statusText as NotificationStatus;
    else errors.push(`Status must be one of ${NOTIFICATION_STATUSES.join(", ")}`);
  }
  const pageText = text("page", "Page");
  let page = 0;
  if (pageText !== undefined) {
    if (!/^\d{1,6}$/.test(pageText)) errors.push("Page must be a whole number of 1 to 6 digits");
    else if (Number(pageText) > MAX_PAGE) {
      errors.push(`Page must be at most ${MAX_PAGE} (${MAX_PAGE * PAGE_SIZE} rows back); narrow the search instead`);
    } else page = Number(pageText);
  }
  const search: NotificationSearch = {
    q: text("q", "Search"),
    id: text("id", "Notification id"),
    outTradeNo: text("outTradeNo", "out_trade_no"),
    transactionId: text("transactionId", "transaction_id"),
    mchid: text("mchid", "Merchant"),
    subMchid: text("subMchid", "Sub-merchant (sub_mchid)"),
    status,
    from: time("from", "From"),
    to: time("to", "To"),
    page,
  };
  if (search.from && search.to && search.from >= search.to) errors.push("From must be before To");
  return { search, errors };
}

/** Columns the list shows; the body (encrypted resource) and headers are left in the database. */
const LIST_SELECT = {
  id: true,
  apiVersion: true,
  mchid: true,
  eventType: true,
  receivedAt: true,
  status: true,
  attempts: true,
  errorCode: true,
  outTradeNo: true,
  transactionId: true,
  outRefundNo: true,
  subMchid: true,
  appliedAt: true,
} satisfies Prisma.NotificationSelect;

export type NotificationRow = Prisma.NotificationGetPayload<{ select: typeof LIST_SELECT }>;

/**
 * The notifications of the refund whose WeChat refund number (`refund_id`, on WeChat's bills) is `refundId`: no
 * notification column holds it, so it is found through the Refund row (`refundId` is unique) — those of its
 * out_refund_no under its order's merchant (and sub-merchant: out_refund_no is unique only within the merchant that
 * requested the refund), and the notification that recorded it. None when no refund has that number.
 */
async function refundNotifications(db: DbClient, refundId: string): Promise<Prisma.NotificationWhereInput[]> {
  // One statement (Prisma's relation select is two): the Refund by its unique refundId, its order's merchant.
  const [refund] = await db.$queryRaw<
    { outRefundNo: string; notificationId: string | null; mchid: string | null; subMchid: string | null }[]
  >`
    SELECT r."outRefundNo", r."notificationId", o.mchid, o."subMchid"
      FROM "Refund" r LEFT JOIN "Order" o ON o.id = r."orderId"
     WHERE r."refundId" = ${refundId}`;
  if (!refund) return [];
  const matches: Prisma.NotificationWhereInput[] = [];
  if (refund.mchid !== null) {
    matches.push({
      outRefundNo: refund.outRefundNo,
      mchid: refund.mchid,
      ...(refund.subMchid !== null ? { subMchid: refund.subMchid } : {}),
    });
  }
  if (refund.notificationId !== null) matches.push({ id: refund.notificationId });
  return matches;
}

/** `refundMatches`: what the free text finds as a WeChat refund number (`refundNotifications`). */
export function searchWhere(
  search: NotificationSearch,
  refundMatches: Prisma.NotificationWhereInput[] = [],
): Prisma.NotificationWhereInput {
  const and: Prisma.NotificationWhereInput[] = [];
  if (search.q) {
    and.push({
      OR: [
        { id: search.q },
        { wechatId: search.q },
        { outTradeNo: search.q },
        { transactionId: search.q },
        { outRefundNo: search.q },
        ...refundMatches,
      ],
    });
  }
  // WeChat's id finds the APIv3 notifications carrying it: two merchants' may, each its own row.
  if (search.id) and.push({ OR: [{ id: search.id }, { wechatId: search.id }] });
  if (search.outTradeNo) and.push({ outTradeNo: search.outTradeNo });
  if (search.transactionId) and.push({ transactionId: search.transactionId });
  if (search.mchid) and.push({ mchid: search.mchid });
  if (search.subMchid) and.push({ subMchid: search.subMchid });
  if (search.status) and.push({ status: search.status });
  if (search.from || search.to) {
    and.push({ receivedAt: { ...(search.from ? { gte: search.from } : {}), ...(search.to ? { lt: search.to } : {}) } });
  }
  return and.length ? { AND: and } : {};
}

/**
 * Newest first. Exact matches only, each served by an index: the free text by the primary key and the indexes on
 * wechatId, outTradeNo, transactionId and outRefundNo (a bitmap OR of the five; a refund_id's refund, read first by its
 * unique key, adds its outRefundNo and notification id), the notification id by the primary
 * key and the wechatId index, the merchant by (mchid, receivedAt), the
 * sub-merchant by (subMchid, receivedAt), the status by (status, receivedAt), the time range by receivedAt
 * (apps/dashboard/test/search-plans.test.ts explains each search). One extra row is read to know whether there is a next page without counting the whole table.
 */
export async function searchNotifications(
  db: DbClient,
  search: NotificationSearch,
): Promise<{ rows: NotificationRow[]; hasMore: boolean }> {
  const refundMatches = search.q ? await refundNotifications(db, search.q) : [];
  const rows = await db.notification.findMany({
    where: searchWhere(search, refundMatches),
    select: LIST_SELECT,
    orderBy: [{ receivedAt: "desc" }, { id: "desc" }],
    skip: search.page * PAGE_SIZE,
    take: PAGE_SIZE + 1,
  });
  return { rows: rows.slice(0, PAGE_SIZE), hasMore: rows.length > PAGE_SIZE };
}
