import type { PrismaClient } from "@wpn/db";
import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countReviews, loadReviews } from "../src/data/reviews.ts";
import { type PlanNode, planOf, recordingPrisma, type SentStatement } from "./support/query-plans.ts";

/**
 * The orders in review are counted by reason on every /reviews page and every overview refresh (the "In review" card),
 * and listed by reason when someone picks one. With only the (status, updatedAt) index both read the heap row of every
 * order in PAYMENT_REVIEW — the count for its reviewReason, the list to filter on it: on a sale day with a systematic
 * double charge that is tens of thousands of rows (measured: 200,000 orders of which 20,000 DUPLICATE_PAYMENT, 3,918
 * buffers and 20–45 ms per statement, per refresh), to count them or to find the 5 of another reason. The statements
 * are the ones `countReviews` and `loadReviews` send, captured from Prisma's query log and explained on 6,000 orders
 * with 2,000 in review, vacuumed and analyzed as autovacuum leaves a table that is mostly read.
 */

const ORDERS = 6_000;
/** Every third order. */
const IN_REVIEW = ORDERS / 3;
const NOW = new Date("2026-12-09T12:00:00.000Z");

let t: TestDatabase;
let prisma: PrismaClient<"query">;
let sent: SentStatement[];

beforeAll(async () => {
  t = await createTestDatabase("review_plans");
  // Orders O1…O6000 a second apart, SUCCESS but every third (O1, O4, …) in review as DUPLICATE_PAYMENT, three of those
  // (O1000, O2002, O3001) as AMOUNT_MISMATCH instead.
  await t.db.pool.query(
    `INSERT INTO "Order" ("outTradeNo", mchid, appid, "amountTotal", status, "reviewReason", "updatedAt")
     SELECT 'O' || i, '1900000109', 'wxapp', 100, (CASE WHEN reason IS NULL THEN 'SUCCESS' ELSE 'PAYMENT_REVIEW' END)::"OrderStatus",
            reason, timestamp '2026-12-09' + i * interval '1 second'
     FROM (SELECT i, CASE WHEN i IN (1000, 2002, 3001) THEN 'AMOUNT_MISMATCH' WHEN i % 3 = 1 THEN 'DUPLICATE_PAYMENT' END AS reason
             FROM generate_series(1, $1::int) AS i) AS o`,
    [ORDERS],
  );
  await t.db.pool.query(`VACUUM ANALYZE "Order"`);
  ({ prisma, sent } = recordingPrisma(t));
});

afterAll(async () => {
  await prisma?.$disconnect();
  await t?.drop();
});

/** Every node of the plan that reads Order: `<node type> <index>`. */
function orderReads(node: PlanNode): string[] {
  const own = node["Relation Name"] === "Order" ? [`${node["Node Type"]} ${node["Index Name"] ?? ""}`.trim()] : [];
  return [...own, ...(node.Plans ?? []).flatMap(orderReads)];
}

/** The reads of Order in the plans of the statements sent since `sent` was emptied that select from Order itself. */
async function orderStatementReads(): Promise<string[][]> {
  // The notification statements look each DUPLICATE_PAYMENT notification's order up (by its key); not those.
  const statements = sent.filter(
    (s) => /FROM\s+(?:"\w+"\.)?"Order"/.test(s.query) && !s.query.includes('"Notification"'),
  );
  const reads: string[][] = [];
  for (const statement of statements) {
    reads.push(orderReads(await planOf(t, statement)));
  }
  return reads;
}

/**
 * A read of Order through the partial index of the orders in review. Index-only (no order's row read) or a plain index
 * scan: which one the planner takes for the same statement depends on how much of the table the visibility map says
 * is all-visible (VACUUM sets it; an older snapshot open elsewhere on the server holds it back), and CI runs saw both,
 * for the list and for the count alike. Either way no other order is read — what a scan of every order in review did.
 */
const throughIndex = expect.stringMatching(/^Index (?:Only )?Scan Order_reviewReason_updatedAt_idx$/);

describe("the orders in review, with a systematic double charge in review", () => {
  it("are counted by reason through the index of the orders in review alone", async () => {
    sent.length = 0;
    const counts = await countReviews(prisma, NOW);
    expect(Object.fromEntries(counts.byReason.map((g) => [g.reason, g.count]))).toEqual({
      DUPLICATE_PAYMENT: IN_REVIEW - 3,
      AMOUNT_MISMATCH: 3,
    });
    expect(await orderStatementReads()).toEqual([[throughIndex]]);
  });

  it("of one reason are listed through that index, reading that reason's orders only", async () => {
    sent.length = 0;
    const { orders } = await loadReviews(prisma, "AMOUNT_MISMATCH", NOW);
    expect(orders.map((o) => o.outTradeNo)).toEqual(["O3001", "O2002", "O1000"]);
    const reads = await orderStatementReads();
    // The list, then the count (`countReviews`, above).
    expect(reads).toEqual([[throughIndex], [throughIndex]]);
  });

  it("of every reason are listed newest first", async () => {
    const { orders } = await loadReviews(prisma, undefined, NOW);
    expect(orders).toHaveLength(500);
    expect(orders.slice(0, 3).map((o) => o.outTradeNo)).toEqual(["O5998", "O5995", "O5992"]);
    expect(orders[0]).toEqual({
      id: expect.any(String),
      outTradeNo: "O5998",
      mchid: "1900000109",
      subMchid: null,
      amountTotal: 100,
      currency: "CNY",
      paidTotal: null,
      paidCurrency: null,
      reviewReason: "DUPLICATE_PAYMENT",
      transactionId: null,
      paidAt: null,
      updatedAt: new Date("2026-12-09T01:39:58.000Z"),
      secondCharges: [],
    });
  });
});
