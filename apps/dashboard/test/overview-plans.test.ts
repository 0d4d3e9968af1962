import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { type Client, loggedIn } from "./support/client.ts";

/**
 * The overview is the page left open and refreshed on a sale day, and its figures are over the last hour of
 * Notification: the rows the workers are writing at that moment, whose heap pages (about 1 KB of body per row) are
 * not all-visible yet. Each statement that reads them reads them all — some 40,000 pages for 300,000 rows an hour,
 * through shared_buffers, pushing out the pages the workers use. It once took six statements (received per minute,
 * applied per minute, overall latency, statuses, failures, the last 60 s), two of them over two hours: about 180,000
 * buffer reads per refresh at that rate. The test counts the reads of Notification in the plans of the statements
 * one page view sends, on a two-day table with fresh statistics.
 */

// 12:00:30 UTC; the page's window is 11:01:00–12:01:00.
const NOW = new Date("2026-12-09T12:00:30.000Z");
const ROWS = 17_280;

let d: TestDashboard;
let viewer: Client;

beforeAll(async () => {
  d = await startDashboard("dash_overview_plans", { now: () => NOW });
  // One notification every 10 s over two days, the newest 5 s before now. Applied 500 ms after receipt, but one in 100
  // FAILED (DB_TIMEOUT) and one in 250 DEAD (DECRYPT_FAILED); one in 1,000 applied 2 minutes ago, however long before
  // it was received (a long retry: counted when received within the two hours).
  await d.database.db.pool.query(
    `INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", body, status, "errorCode", "appliedAt")
     SELECT 'n' || i, '1900000109', 'TRANSACTION.SUCCESS', r, repeat('x', 900),
            (CASE WHEN i % 100 = 7 THEN 'FAILED' WHEN i % 250 = 3 THEN 'DEAD' ELSE 'APPLIED' END)::"NotificationStatus",
            CASE WHEN i % 100 = 7 THEN 'DB_TIMEOUT' WHEN i % 250 = 3 THEN 'DECRYPT_FAILED' END,
            CASE WHEN i % 100 = 7 OR i % 250 = 3 THEN NULL
                 WHEN i % 1000 = 500 THEN $2::timestamp - interval '2 minutes'
                 ELSE r + interval '500 milliseconds' END
     FROM (SELECT i, $2::timestamp - interval '5 seconds' - i * interval '10 seconds' AS r
             FROM generate_series(0, $1::int - 1) AS i) AS s`,
    [ROWS, "2026-12-09 12:00:30"],
  );
  await d.database.db.pool.query(`ANALYZE "Notification"`);
  viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await d?.close();
});

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

/** Every node of the plan that reads Notification (a scan of its heap or of one of its indexes). */
function notificationReads(node: PlanNode): string[] {
  const own = node["Relation Name"] === "Notification" ? [`${node["Node Type"]} ${node["Index Name"] ?? ""}`] : [];
  return [...own, ...(node.Plans ?? []).flatMap(notificationReads)];
}

describe("the overview, one page view", () => {
  it("shows the hour's figures", async () => {
    const text = (await viewer.get("/")).body.replace(/<[^>]+>/g, " ").replace(/\s+/g, " ");
    // Received 11:01:00–12:00:25: 357 rows, 3 or 4 of them FAILED and 1 or 2 DEAD.
    expect(text).toContain("Received /s 0.10 357 in the last hour");
    // Applied within the window: 357 − 4 FAILED − 2 DEAD received in it, plus two long retries (received at 11:00:05
    // and at 10:44:15, applied at 11:58:30) — the first of which is one of the rows received before the window.
    expect(text).toContain("Applied /s 0.08 352 in the last hour");
    expect(text).toContain("Receipt → commit p50 500 ms p99 500 ms · 352 applied");
    expect(text).toContain("DB_TIMEOUT 4 1.1 % 4");
    expect(text).toContain("DECRYPT_FAILED 2 0.6 % 2");
    expect(text).toMatch(/APPLIED 351 98\.3 %/);
  });

  it("reads Notification at most twice, each time through an index on receivedAt", async () => {
    const spy = vi.spyOn(d.database.db.pool, "query");
    let sent: unknown[][];
    try {
      expect((await viewer.get("/")).statusCode).toBe(200);
      // Read before mockRestore, which forgets them.
      sent = [...spy.mock.calls];
    } finally {
      spy.mockRestore();
    }
    const statements = sent
      .map(([text, params]) => ({ text: String(text), params: (params ?? []) as unknown[] }))
      .filter((s) => s.text.includes('"Notification"'));
    expect(statements.length).toBeGreaterThan(0);
    const reads: string[] = [];
    for (const statement of statements) {
      const { rows } = await d.database.db.pool.query<{ "QUERY PLAN": { Plan: PlanNode }[] }>(
        `EXPLAIN (FORMAT JSON) ${statement.text}`,
        statement.params,
      );
      reads.push(...notificationReads(rows[0]?.["QUERY PLAN"][0]?.Plan as PlanNode));
    }
    expect(reads.length, reads.join("\n")).toBeLessThanOrEqual(2);
    for (const read of reads) expect(read).toMatch(/receivedAt/);
  });
});
