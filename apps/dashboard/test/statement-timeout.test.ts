import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTimeout } from "../src/timeout.ts";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { type Client, loggedIn } from "./support/client.ts";

/**
 * The dashboard's statements run on a pool of its own size (DASHBOARD_PG_POOL_MAX) under its own statement_timeout
 * (DASHBOARD_PG_STATEMENT_TIMEOUT_MS), not the workers' PG_POOL_MAX and @wpn/db's 30 s: a page whose statement cannot
 * finish (here: waiting for a lock on Order, as behind a long ALTER TABLE or a stuck transaction) held one of those
 * connections for 30 s and then answered a bare 500 INTERNAL_ERROR, and a few such pages held as many connections as
 * the workers get. Now PostgreSQL cancels it at the dashboard's bound and the page says so.
 */

const TIMEOUT_MS = 300;
/** What "not a hang" means here: the timeout, a margin for a loaded machine, far below the 30 s of before. */
const ANSWER_WITHIN_MS = 3_000;

let d: TestDashboard;
let viewer: Client;

beforeAll(async () => {
  d = await startDashboard("dash_stmt_timeout", {
    env: { PG_POOL_MAX: "10", DASHBOARD_PG_POOL_MAX: "2", DASHBOARD_PG_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS) },
    ownDb: true,
  });
  viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
});

afterAll(async () => {
  await d?.close();
});

/** Runs `body` while another session holds an ACCESS EXCLUSIVE lock on Order (every read of it waits). */
async function withOrderLocked<T>(body: () => Promise<T>): Promise<T> {
  const locker = await d.database.db.pool.connect();
  try {
    await locker.query(`BEGIN; LOCK TABLE "Order" IN ACCESS EXCLUSIVE MODE`);
    return await body();
  } finally {
    await locker.query("ROLLBACK");
    locker.release();
  }
}

describe("a page whose statement runs past DASHBOARD_PG_STATEMENT_TIMEOUT_MS", () => {
  it("answers 503 STATEMENT_TIMEOUT naming the setting, at that bound, not when the statement would end", async () => {
    await withOrderLocked(async () => {
      const started = performance.now();
      const page = await withTimeout(viewer.get("/reviews"), ANSWER_WITHIN_MS, "/reviews");
      expect(performance.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS);
      expect(page.statusCode).toBe(503);
      expect(page.body).toContain("503 STATEMENT_TIMEOUT");
      expect(page.body).toContain(`DASHBOARD_PG_STATEMENT_TIMEOUT_MS, ${TIMEOUT_MS} ms`);
      const json = await withTimeout(
        viewer.get("/reviews", { accept: "application/json" }),
        ANSWER_WITHIN_MS,
        "/reviews",
      );
      expect(json.statusCode).toBe(503);
      expect(JSON.parse(json.body)).toMatchObject({ error: "STATEMENT_TIMEOUT" });
    });
    // The cancelled statements left their connections usable: the same page answers once the lock is gone.
    expect((await viewer.get("/reviews")).statusCode).toBe(200);
  });

  it("holds at most DASHBOARD_PG_POOL_MAX of the dashboard's connections meanwhile, not PG_POOL_MAX", async () => {
    await withOrderLocked(async () => {
      // /reviews sends six statements at once: more than the dashboard's pool, fewer than PG_POOL_MAX.
      const page = viewer.get("/reviews");
      await expect.poll(() => d.db.pool.waitingCount).toBeGreaterThan(0);
      expect(d.db.pool.totalCount).toBe(2);
      expect((await withTimeout(page, ANSWER_WITHIN_MS, "/reviews")).statusCode).toBe(503);
    });
  });
});
