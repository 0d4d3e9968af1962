import { NotificationStatus, type Prisma } from "@wpn/db";
import type { DbClient } from "./audit.ts";

export const NOTIFICATION_STATUSES = Object.values(NotificationStatus) as NotificationStatus[];

/** A validated search; every field optional, all given fields must match (AND). */
export interface NotificationSearch {
  /** Free text: matched exactly against id, out_trade_no, transaction_id and out_refund_no. */
  q?: string;
  id?: string;
  outTradeNo?: string;
  transactionId?: string;
  mchid?: string;
  status?: NotificationStatus;
  /** receivedAt ≥ from, receivedAt < to. */
  from?: Date;
  to?: Date;
  page: number;
}

export const PAGE_SIZE = 50;
const MAX_TEXT = 128;

/**
 * Reads the search form (query string). Values are trimmed; an invalid value is reported, not silently
 * dropped, so an on-call engineer never reads "no results" for a query that was not run.
 * Times are `YYYY-MM-DDTHH:MM[:SS]` in UTC (what a datetime-local input sends) or full ISO 8601.
 */
export function parseSearch(query: Record<string, unknown>): { search: NotificationSearch; errors: string[] } {
  const errors: string[] = [];
  const text = (key: string, label: string): string | undefined => {
    const value = query[key];
    if (typeof value !== "string") return undefined;
    const trimmed = value.trim();
    if (trimmed === "") return undefined;
    if (trimmed.length > MAX_TEXT) {
      errors.push(`${label} is longer than ${MAX_TEXT} characters`);
      return undefined;
    }
    return trimmed;
  };
  const time = (key: string, label: string): Date | undefined => {
    const value = text(key, label);
    if (value === undefined) return undefined;
    const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/.test(value) ? `${value}Z` : value;
    const date = new Date(iso);
    if (Number.isNaN(date.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(value)) {
      errors.push(`${label} is not a date and time (YYYY-MM-DDTHH:MM, UTC)`);
      return undefined;
    }
    return date;
  };
  const statusText = text("status", "Status");
  let status: NotificationStatus | undefined;
  if (statusText !== undefined) {
    if ((NOTIFICATION_STATUSES as string[]).includes(statusText)) status = statusText as NotificationStatus;
    else errors.push(`Status must be one of ${NOTIFICATION_STATUSES.join(", ")}`);
  }
  const pageText = text("page", "Page");
  const page = pageText !== undefined && /^\d{1,6}$/.test(pageText) ? Number(pageText) : 0;
  const search: NotificationSearch = {
    q: text("q", "Search"),
    id: text("id", "Notification id"),
    outTradeNo: text("outTradeNo", "out_trade_no"),
    transactionId: text("transactionId", "transaction_id"),
    mchid: text("mchid", "Merchant"),
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
  appliedAt: true,
} satisfies Prisma.NotificationSelect;

export type NotificationRow = Prisma.NotificationGetPayload<{ select: typeof LIST_SELECT }>;

export function searchWhere(search: NotificationSearch): Prisma.NotificationWhereInput {
  const and: Prisma.NotificationWhereInput[] = [];
  if (search.q) {
    and.push({
      OR: [{ id: search.q }, { outTradeNo: search.q }, { transactionId: search.q }, { outRefundNo: search.q }],
    });
  }
  if (search.id) and.push({ id: search.id });
  if (search.outTradeNo) and.push({ outTradeNo: search.outTradeNo });
  if (search.transactionId) and.push({ transactionId: search.transactionId });
  if (search.mchid) and.push({ mchid: search.mchid });
  if (search.status) and.push({ status: search.status });
  if (search.from || search.to) {
    and.push({ receivedAt: { ...(search.from ? { gte: search.from } : {}), ...(search.to ? { lt: search.to } : {}) } });
  }
  return and.length ? { AND: and } : {};
}

/**
 * Newest first. Exact matches only, each served by an index: the free text by the primary key and the indexes on
 * outTradeNo, transactionId and outRefundNo (a bitmap OR of the four), the merchant by (mchid, receivedAt), the
 * status by (status, receivedAt), the time range by receivedAt (apps/dashboard/test/search-plans.test.ts explains
 * each search). One extra row is read to know whether there is a next page without counting the whole table.
 */
export async function searchNotifications(
  db: DbClient,
  search: NotificationSearch,
): Promise<{ rows: NotificationRow[]; hasMore: boolean }> {
  const rows = await db.notification.findMany({
    where: searchWhere(search),
    select: LIST_SELECT,
    orderBy: [{ receivedAt: "desc" }, { id: "desc" }],
    skip: search.page * PAGE_SIZE,
    take: PAGE_SIZE + 1,
  });
  return { rows: rows.slice(0, PAGE_SIZE), hasMore: rows.length > PAGE_SIZE };
}
