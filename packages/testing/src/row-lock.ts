import type { TestDatabase } from "./database.ts";

/**
 * Runs `statement` while another transaction holds a row it needs: that transaction runs `change` (an UPDATE of the
 * row, with `params`) and commits only once the statement is seen waiting for a lock (`pg_stat_activity`) — or has
 * finished without waiting, which the caller's assertions then catch. Makes "a concurrent change committed while
 * the statement runs" certain instead of a timing accident.
 */
export async function whileRowChanges<T>(
  tdb: TestDatabase,
  change: string,
  params: unknown[],
  statement: () => Promise<T>,
): Promise<T> {
  // A connection of the test database's own pool: its search_path and time zone are already those of the schema.
  const holder = await tdb.db.pool.connect();
  try {
    await holder.query("BEGIN");
    await holder.query(change, params);
    const running = statement();
    await waitsForLock(tdb, running);
    await holder.query("COMMIT");
    return await running;
  } catch (error) {
    // Never hand a connection that still holds the row back to the pool.
    await holder.query("ROLLBACK");
    throw error;
  } finally {
    holder.release();
  }
}

/**
 * Whether a statement of the test database's pool (its application_name) is seen waiting for a lock before `running`
 * settles: polled every 20 ms, for at most 10 s (then it throws: a wait that never ends is no answer). Resolves false
 * when `running` settled (either way) without such a wait; the caller's assertions look at its outcome.
 */
export async function waitsForLock(tdb: TestDatabase, running: Promise<unknown>): Promise<boolean> {
  const settled = running.then(
    () => "done",
    () => "done",
  );
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [waiting] = await tdb.db.prisma.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE wait_event_type = 'Lock' AND application_name = ${`test:${tdb.schema}`}`;
    if ((waiting?.n ?? 0) > 0) return true;
    const state = await Promise.race([settled, new Promise((r) => setTimeout(() => r("pending"), 20))]);
    if (state === "done") return false;
    if (Date.now() > deadline) throw new Error("neither waiting for a lock nor done after 10 s");
  }
}
