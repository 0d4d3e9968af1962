import type { PrismaClient } from "@wpn/db";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NotificationSearch, searchNotifications } from "../src/data/notifications.ts";
import { type PlanNode, planOf, recordingPrisma, type SentStatement } from "./support/query-plans.ts";

/**
 * Every search the Notifications page offers must be answered from an index when it matches few rows: the table
 * holds every notification ever received, and a search that reads all of it took seconds at 500k rows (the
 * free-text search, which matches outRefundNo too, and the filter on a merchant with few notifications did, before
 * their indexes). The statements are the ones Prisma sends for `searchNotifications`, captured from its query log
 * and explained on 20,000 rows with fresh statistics. (A filter matching many rows, such as a busy merchant, may
 * rightly be served by reading the newest rows through the receivedAt index and skipping the others.)
 */

const ROWS = 20_000;

let t: TestDatabase;
let prisma: PrismaClient<"query">;
let sent: SentStatement[];

beforeAll(async () => {
  t = await createTestDatabase("search_plans");
  // One notification a minute; every fifth a refund (outRefundNo), one in 200 DEAD; two busy merchants in turn and
  // a quiet one (one in 1,000); one in 500 names one of three sub-merchants (partner mode), the others none. The
  // newer half has APIv3 ids of the `v3:<mchid>:<WeChat's id>` form with WeChat's id beside it; the older half was
  // parsed before, its id WeChat's id alone.
  await t.db.pool.query(
    `INSERT INTO "Notification" (id, "wechatId", mchid, "eventType", "receivedAt", body, status, "outTradeNo", "transactionId", "outRefundNo", "subMchid")
     SELECT CASE WHEN i > $1::int / 2 THEN 'v3:' || (1900000000 + i % 2)::text || ':n' || i ELSE 'n' || i END,
            CASE WHEN i > $1::int / 2 THEN 'n' || i END,
            CASE WHEN i % 1000 = 0 THEN '1900000999' ELSE (1900000000 + i % 2)::text END,
            CASE WHEN i % 5 = 0 THEN 'REFUND.SUCCESS' ELSE 'TRANSACTION.SUCCESS' END,
            timestamp '2026-11-01' + i * interval '1 minute', '{}',
            (CASE WHEN i % 200 = 0 THEN 'DEAD' ELSE 'APPLIED' END)::"NotificationStatus",
            'T' || i, '4200' || i, CASE WHEN i % 5 = 0 THEN 'R' || i END,
            CASE WHEN i % 500 = 0 THEN '1900000A0' || (i / 500 % 3) END
     FROM generate_series(1, $1::int) AS i`,
    [ROWS],
  );
  // The refund of notification 12345, to find by WeChat's refund number.
  await t.db.pool.query(
    `WITH o AS (INSERT INTO "Order" ("outTradeNo", mchid, appid, "amountTotal", "updatedAt")
                VALUES ('T12345', '1900000001', 'wx1', 100, now()) RETURNING id)
     INSERT INTO "Refund" ("outRefundNo", "refundId", "outTradeNo", "orderId", status, "amountRefund", "amountTotal",
                           "notificationId", "updatedAt")
     SELECT 'R12345', 'WX12345', 'T12345', id, 'SUCCESS', 100, 100, 'v3:1900000001:n12345', now() FROM o`,
  );
  await t.db.pool.query(`ANALYZE "Notification"`);
  ({ prisma, sent } = recordingPrisma(t));
});

afterAll(async () => {
  await prisma?.$disconnect();
  await t?.drop();
});

/** The plan's reads of Notification not narrowed by an index condition: a sequential scan, or a whole index in order. */
function unindexedReads(node: PlanNode): string[] {
  const own: string[] = [];
  if (node["Relation Name"] === "Notification") {
    const type = node["Node Type"];
    const narrowed =
      type === "Bitmap Heap Scan" ||
      ((type === "Index Scan" || type === "Index Only Scan") && node["Index Cond"] !== undefined);
    if (!narrowed) own.push(`${type} ${node["Index Name"] ?? ""} filter ${node.Filter ?? "none"}`);
  }
  return [...own, ...(node.Plans ?? []).flatMap(unindexedReads)];
}

const searches: Record<string, Omit<NotificationSearch, "page">> = {
  "free text: an out_trade_no": { q: "T12345" },
  "free text: an out_refund_no": { q: "R12345" },
  "free text: WeChat's refund number (refund_id)": { q: "WX12345" },
  "free text: a notification id": { q: "v3:1900000001:n12345" },
  "free text: WeChat's id of a notification": { q: "n12345" },
  "free text: the id of a notification parsed before WeChat's id had a column": { q: "n777" },
  "notification id": { id: "v3:1900000001:n12345" },
  "notification id: WeChat's id": { id: "n12345" },
  "notification id: one parsed before WeChat's id had a column": { id: "n777" },
  out_trade_no: { outTradeNo: "T777" },
  transaction_id: { transactionId: "4200777" },
  "a merchant with few notifications": { mchid: "1900000999" },
  "status (a rare one)": { status: "DEAD" },
  "an hour": { from: new Date("2026-11-05T00:00:00Z"), to: new Date("2026-11-05T01:00:00Z") },
  "a busy merchant and free text": { mchid: "1900000001", q: "T12345" },
  "a sub-merchant": { subMchid: "1900000A01" },
  "a sub-merchant and a status": { subMchid: "1900000A01", status: "DEAD" },
};

describe("the Notifications page's searches", () => {
  for (const [what, search] of Object.entries(searches)) {
    it(`${what}: read through an index`, async () => {
      sent.length = 0;
      const { rows } = await searchNotifications(prisma, { ...search, page: 0 });
      expect(rows.length).toBeGreaterThan(0);
      // The search, and before it for free text the lookup of a refund by WeChat's refund number (a unique key).
      expect(sent).toHaveLength(search.q ? 2 : 1);
      for (const statement of sent) {
        const plan = await planOf(t, statement);
        expect(unindexedReads(plan), JSON.stringify(plan)).toEqual([]);
      }
    });
  }
});
