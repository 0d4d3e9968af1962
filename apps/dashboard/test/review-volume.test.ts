import type { PrismaClient } from "@wpn/db";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countReviews, loadReviews } from "../src/data/reviews.ts";
import { type PlanNode, planOf, recordingPrisma, type SentStatement } from "./support/query-plans.ts";

/**
 * /reviews and the overview's "In review" card at volume. A notification whose second payment put its order in
 * review (DUPLICATE_PAYMENT) is told by the order's row and left out of the notifications in review. That exclusion
 * once fetched every such order and sent each one back as three bind parameters of the notification statements: a
 * cost growing with (orders in review) × (notifications in review), and past 21,845 orders (65,535 parameters, the
 * protocol's limit) every /reviews and overview page failed. A systematic double charge on a sale day reaches that.
 * Once those second charges are refunded in full they are settled (neither their notifications nor their refunds are
 * listed); the settled charges were likewise read beforehand and sent back as two parameters each, failing every
 * /reviews and overview page past 32,767 of them.
 */

const ORDERS = 21_846;
/** Second charges refunded in full (orders S1…S32768, charge T<i>), one past 65,535 / 2. */
const SETTLED = 32_768;
const A = "1900000101";
const B = "1900000202";
const NOW = new Date("2026-12-09T12:00:00.000Z");

let t: TestDatabase;
let prisma: PrismaClient<"query">;
let sent: SentStatement[];

beforeAll(async () => {
  t = await createTestDatabase("review_volume");
  // Merchant A's orders D1…D21846 in review as DUPLICATE_PAYMENT, every tenth one a sub-merchant's.
  await t.db.pool.query(
    `INSERT INTO "Order" ("outTradeNo", mchid, appid, "subMchid", "amountTotal", status, "reviewReason", "updatedAt")
     SELECT 'D' || i, $2, 'wxapp', CASE WHEN i % 10 = 0 THEN '1900000S01' END, 100,
            'PAYMENT_REVIEW'::"OrderStatus", 'DUPLICATE_PAYMENT', timestamp '2026-12-01' + i * interval '1 second'
     FROM generate_series(1, $1::int) AS i`,
    [ORDERS, A],
  );
  // 20,000 applied notifications of the week (the table the review statements must not read through), and in review:
  // the second payments of A's orders D1…D300 (told by the orders), B's own D1 and D2 (B has no order in review),
  // A's D10 without its sub-merchant (not that order's: D10 is the sub-merchant's), A's D11 named by a sub-merchant
  // (not that order's either), one without an out_trade_no, and a TRANSACTION_CONFLICT.
  await t.db.pool.query(
    `INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", body, status, "errorCode", "outTradeNo", "subMchid")
     SELECT 'applied-' || i, $1, 'TRANSACTION.SUCCESS', timestamp '2026-12-03' + i * interval '20 seconds', '{}',
            'APPLIED'::"NotificationStatus", NULL, 'P' || i, NULL
     FROM generate_series(1, 20000) AS i
     UNION ALL
     SELECT 'told-' || i, $1, 'TRANSACTION.SUCCESS', timestamp '2026-12-08' + i * interval '1 second', '{}',
            'REVIEW'::"NotificationStatus", 'DUPLICATE_PAYMENT', 'D' || i, CASE WHEN i % 10 = 0 THEN '1900000S01' END
     FROM generate_series(1, 300) AS i
     UNION ALL
     SELECT id, mchid, 'TRANSACTION.SUCCESS', at, '{}', 'REVIEW'::"NotificationStatus", code, number, sub
     FROM (VALUES ('b-d1', $2, timestamp '2026-12-09 10:00', 'DUPLICATE_PAYMENT', 'D1', NULL),
            ('b-d2', $2, timestamp '2026-12-09 10:01', 'DUPLICATE_PAYMENT', 'D2', NULL),
            ('a-d10-direct', $1, timestamp '2026-12-09 10:02', 'DUPLICATE_PAYMENT', 'D10', NULL),
            ('a-d11-sub', $1, timestamp '2026-12-09 10:03', 'DUPLICATE_PAYMENT', 'D11', '1900000S01'),
            ('a-no-number', $1, timestamp '2026-12-09 10:04', 'DUPLICATE_PAYMENT', NULL, NULL),
            ('a-conflict', $1, timestamp '2026-12-09 10:05', 'TRANSACTION_CONFLICT', 'D5', NULL))
       AS v (id, mchid, at, code, number, sub)`,
    [A, B],
  );
  // Merchant A's orders S1…S32768, out of review (SUCCESS: the refund statement closed it), their second charges
  // T<i> refunded in full — S1 and S2 in two parts —; W1 and W2 (REFUND), their second charges refunded in part (W2
  // in two parts): owed, listed. And a DUPLICATE_PAYMENT_REFUNDED refund without an order (never settled: listed).
  await t.db.pool.query(
    `INSERT INTO "Order" ("outTradeNo", mchid, appid, "amountTotal", status, "updatedAt")
     SELECT 'S' || i, $2, 'wxapp', 100, 'SUCCESS'::"OrderStatus", timestamp '2026-12-02' + i * interval '1 second'
     FROM generate_series(1, $1::int) AS i
     UNION ALL
     SELECT number, $2, 'wxapp', 100, 'REFUND'::"OrderStatus", timestamp '2026-12-09' FROM (VALUES ('W1'), ('W2')) AS v (number)`,
    [SETTLED, A],
  );
  await t.db.pool.query(
    `INSERT INTO "Refund" ("outRefundNo", "outTradeNo", "orderId", "transactionId", status, "amountRefund",
                           "amountTotal", "reviewReason", "updatedAt")
     SELECT 'R' || o."outTradeNo" || '-' || p.part, o."outTradeNo", o.id, 'T' || o."outTradeNo",
            'SUCCESS'::"RefundStatus", p.amount, 100, 'DUPLICATE_PAYMENT_REFUNDED', p.at
     FROM "Order" o
     JOIN (VALUES ('S1', 1, 40, timestamp '2026-12-09 09:00'), ('S1', 2, 60, timestamp '2026-12-09 09:01'),
                  ('S2', 1, 60, timestamp '2026-12-09 09:02'), ('S2', 2, 40, timestamp '2026-12-09 09:03'),
                  ('W1', 1, 50, timestamp '2026-12-09 09:04'), ('W2', 1, 30, timestamp '2026-12-09 09:05'),
                  ('W2', 2, 30, timestamp '2026-12-09 09:06'))
       AS p (number, part, amount, at) ON p.number = o."outTradeNo"
     UNION ALL
     SELECT 'R' || o."outTradeNo" || '-1', o."outTradeNo", o.id, 'T' || o."outTradeNo", 'SUCCESS'::"RefundStatus", 100,
            100, 'DUPLICATE_PAYMENT_REFUNDED', timestamp '2026-12-02' + substr(o."outTradeNo", 2)::int * interval '1 second'
     FROM "Order" o WHERE o."outTradeNo" LIKE 'S%' AND o."outTradeNo" NOT IN ('S1', 'S2')
     UNION ALL
     SELECT 'R-NO-ORDER', 'GONE', NULL, 'TGONE', 'SUCCESS'::"RefundStatus", 100, 100, 'DUPLICATE_PAYMENT_REFUNDED',
            timestamp '2026-12-09 11:00'`,
  );
  // In review: the second charges' notifications of S1…S300 (settled) and of W1 and W2 (owed).
  await t.db.pool.query(
    `INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", body, status, "errorCode", "outTradeNo",
                                 "transactionId")
     SELECT 'settled-' || i, $1, 'TRANSACTION.SUCCESS', timestamp '2026-12-07' + i * interval '1 second', '{}',
            'REVIEW'::"NotificationStatus", 'DUPLICATE_PAYMENT', 'S' || i, 'TS' || i
     FROM generate_series(1, 300) AS i
     UNION ALL
     SELECT 'a-' || lower(number), $1, 'TRANSACTION.SUCCESS', at, '{}', 'REVIEW'::"NotificationStatus",
            'DUPLICATE_PAYMENT', number, 'T' || number
     FROM (VALUES ('W1', timestamp '2026-12-09 10:06'), ('W2', timestamp '2026-12-09 10:07')) AS v (number, at)`,
    [A],
  );
  await t.db.pool.query(`ANALYZE "Order"; ANALYZE "Notification"; ANALYZE "Refund"`);
  ({ prisma, sent } = recordingPrisma(t));
});

afterAll(async () => {
  await prisma?.$disconnect();
  await t?.drop();
});

const LISTED = ["a-w2", "a-w1", "a-conflict", "a-no-number", "a-d11-sub", "a-d10-direct", "b-d2", "b-d1"];
/** The refunds of second charges refunded in part, and the one without an order, most recently changed first. */
const REFUNDS_LISTED = ["R-NO-ORDER", "RW2-2", "RW2-1", "RW1-1"];

describe("the reviews, with more DUPLICATE_PAYMENT orders in review and more second charges refunded in full than bind parameters allow", () => {
  it("are counted by reason: the orders, and only the notifications and refunds not told or settled otherwise", async () => {
    const counts = await countReviews(prisma, NOW);
    const byReason = Object.fromEntries(counts.byReason.map((g) => [g.reason, g.count]));
    expect(byReason).toEqual({
      DUPLICATE_PAYMENT: ORDERS + 7,
      DUPLICATE_PAYMENT_REFUNDED: REFUNDS_LISTED.length,
      TRANSACTION_CONFLICT: 1,
    });
    expect(counts.total).toBe(ORDERS + 8 + REFUNDS_LISTED.length);
  });

  it("list the notifications newest first, those of the orders in review and of the settled charges left out", async () => {
    const reviews = await loadReviews(prisma, undefined, NOW);
    expect(reviews.notifications.map((n) => n.id)).toEqual(LISTED);
    expect(reviews.notifications[0]?.receivedAt).toEqual(new Date("2026-12-09T10:07:00.000Z"));
    const duplicates = await loadReviews(prisma, "DUPLICATE_PAYMENT", NOW);
    expect(duplicates.notifications.map((n) => n.id)).toEqual(LISTED.filter((id) => id !== "a-conflict"));
    expect(duplicates.orders).toHaveLength(500);
    expect(duplicates.refunds).toEqual([]);
  });

  it("list the refunds of the charges refunded in part, with their order's merchant, not those of the settled ones", async () => {
    for (const reason of [undefined, "DUPLICATE_PAYMENT_REFUNDED"]) {
      const { refunds } = await loadReviews(prisma, reason, NOW);
      expect(
        refunds.map((r) => r.outRefundNo),
        reason,
      ).toEqual(REFUNDS_LISTED);
      expect(refunds[0]?.order, reason).toBeNull();
      expect(refunds[1], reason).toMatchObject({
        transactionId: "TW2",
        status: "SUCCESS",
        amountRefund: 30,
        amountTotal: 100,
        reviewReason: "DUPLICATE_PAYMENT_REFUNDED",
        updatedAt: new Date("2026-12-09T09:06:00.000Z"),
        order: { mchid: A, subMchid: null, currency: "CNY" },
      });
    }
  });

  it("are read through indexes, with a bounded number of bind parameters", async () => {
    sent.length = 0;
    await loadReviews(prisma, undefined, NOW);
    const reads = (table: string) => sent.filter((s) => new RegExp(`FROM\\s+"?[\\w.]*"?\\.?"${table}"`).test(s.query));
    expect(reads("Notification").length).toBeGreaterThan(0);
    expect(reads("Refund").length).toBeGreaterThan(0);
    for (const statement of sent) expect(statement.params.length, statement.query).toBeLessThan(50);
    for (const statement of [...reads("Notification"), ...reads("Refund")]) {
      const plan = await planOf(t, statement);
      // Every refund here is in review, so reading Refund itself whole is the plan's fair choice; what is looked up
      // per row (the order, the charge's refunds) must not be a scan, nor may Notification be read whole.
      const scans = seqScans(plan, false).filter((scan) => scan.perRow || scan.relation !== "Refund");
      expect(scans, statement.query).toEqual([]);
    }
  });
});

/** The sequential scans of `node`'s plan, `perRow` when beneath a SubPlan (run once per row of its parent). */
function seqScans(node: PlanNode, underSubPlan: boolean): { relation: string; perRow: boolean }[] {
  const perRow = underSubPlan || node["Parent Relationship"] === "SubPlan";
  const own = node["Node Type"] === "Seq Scan" ? [{ relation: node["Relation Name"] ?? "?", perRow }] : [];
  return [...own, ...(node.Plans ?? []).flatMap((child) => seqScans(child, perRow))];
}
