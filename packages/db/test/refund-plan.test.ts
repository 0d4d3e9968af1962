import { type RefundFacts, refundStatement } from "@wpn/db";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The refund statement runs once per refund notification, and a refund naming another transaction than its order's
 * looks that transaction up among the notifications (is it a second charge of the order, DUPLICATE_PAYMENT?). The
 * table holds every notification ever received, so every read of it must go through an index: explained on 20,000
 * rows with fresh statistics.
 */

const ROWS = 20_000;

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase("refund_plan");
  await t.db.pool.query(
    `INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", body, status, "outTradeNo", "transactionId", "errorCode")
     SELECT 'n' || i, '1900000109', 'TRANSACTION.SUCCESS', timestamp '2026-11-01' + i * interval '1 minute', '{}',
            (CASE WHEN i % 100 = 0 THEN 'REVIEW' ELSE 'APPLIED' END)::"NotificationStatus", 'T' || (i / 2),
            '4200' || i, CASE WHEN i % 100 = 0 THEN 'DUPLICATE_PAYMENT' END
     FROM generate_series(1, $1::int) AS i`,
    [ROWS],
  );
  await t.db.pool.query(
    `INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", body, status)
     VALUES ('n-refund', '1900000109', 'REFUND.SUCCESS', now(), '{}', 'PROCESSING')`,
  );
  await t.db.pool.query(
    `INSERT INTO "Order" ("outTradeNo", mchid, appid, "amountTotal", status, "transactionId", "updatedAt")
     VALUES ('T50', '1900000109', 'wx-app', 1000, 'PAYMENT_REVIEW', '4200099', now())`,
  );
  await t.db.pool.query(`ANALYZE "Notification"`);
});

afterAll(async () => {
  await t?.drop();
});

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Index Cond"?: string;
  Filter?: string;
  Plans?: PlanNode[];
}

/**
 * The plan's reads of Notification, and those not narrowed by an index condition. An UPDATE's ModifyTable node names
 * the table it writes, not a read: the scan under it is the read.
 */
function notificationReads(node: PlanNode): { all: string[]; unindexed: string[] } {
  const all: string[] = [];
  const unindexed: string[] = [];
  if (node["Relation Name"] === "Notification" && node["Node Type"] !== "ModifyTable") {
    const type = node["Node Type"];
    const read = `${type} ${node["Index Name"] ?? ""} filter ${node.Filter ?? "none"}`;
    all.push(read);
    const narrowed =
      type === "Bitmap Heap Scan" ||
      ((type === "Index Scan" || type === "Index Only Scan") && node["Index Cond"] !== undefined);
    if (!narrowed) unindexed.push(read);
  }
  for (const child of node.Plans ?? []) {
    const reads = notificationReads(child);
    all.push(...reads.all);
    unindexed.push(...reads.unindexed);
  }
  return { all, unindexed };
}

describe("the refund statement's reads of Notification", () => {
  it("a refund of a second charge (4200100, a DUPLICATE_PAYMENT of T50): the notification and the charge by index", async () => {
    const facts: RefundFacts = {
      notificationId: "n-refund",
      outTradeNo: "T50",
      outRefundNo: "R1",
      refundId: "5000R1",
      transactionId: "4200100",
      mchid: "1900000109",
      subMchid: null,
      status: "SUCCESS",
      amountRefund: 1000,
      amountTotal: 1000,
      successAt: null,
      restockOnFullRefund: true,
    };
    const statement = refundStatement(facts);
    const { rows } = await t.db.pool.query<{ "QUERY PLAN": { Plan: PlanNode }[] }>(
      `EXPLAIN (FORMAT JSON) ${statement.text}`,
      statement.values,
    );
    const plan = rows[0]?.["QUERY PLAN"][0]?.Plan as PlanNode;
    const reads = notificationReads(plan);
    // The notification itself (locked, then updated: two reads by id), the second-charge lookup, and the order's
    // second charges (by out_trade_no: whether this refund completes their refunds, closing the order's review).
    expect(reads.all.length, JSON.stringify(plan)).toBe(4);
    expect(reads.unindexed, JSON.stringify(plan)).toEqual([]);
  });
});
