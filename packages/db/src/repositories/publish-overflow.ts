import type { Prisma, PrismaClient } from "../generated/client.ts";

/**
 * The `PublishOverflow` table: business events kept in PostgreSQL while their queue is full (the worker decides when,
 * and adds them back; this module knows nothing of queues). One row per event (`eventId` unique), moved oldest first.
 */

/** A stored event as the relay reads it: `payload` is unknown until the relay parses it. */
export interface OverflowRow {
  id: bigint;
  eventId: string;
  payload: unknown;
}

/**
 * Stores an event. Returns false when a row of `eventId` is there already (a re-run of the job that stored it): the
 * table keeps one copy per event, the first.
 */
export async function storeOverflowEvent(
  prisma: PrismaClient,
  eventId: string,
  payload: Prisma.InputJsonValue,
): Promise<boolean> {
  const { count } = await prisma.publishOverflow.createMany({ data: [{ eventId, payload }], skipDuplicates: true });
  return count > 0;
}

/**
 * Where `moveOverflowEvents` got: `locked` rows taken (oldest first, none that another transaction holds), of which
 * `moved` were deleted because `add` placed them; `lastId`, the newest locked (null: none), where the next step starts.
 * `busy`: another relay's step was under way, so none was taken (`locked` 0).
 */
export interface OverflowMove {
  locked: number;
  moved: number;
  lastId: bigint | null;
  busy: boolean;
}

/**
 * First key of the relays' advisory lock (the two-int form, apart from the bigint keys of migrations and notification
 * twins); the second is the schema's hash, so deployments sharing a database do not hold each other back.
 */
const RELAY_LOCK_CLASS = 0x57504e01;

/**
 * One step of the relay, in one transaction: one relay's step at a time (a transaction-scoped advisory lock, tried, not
 * waited for: a relay finding it held answers `busy` at once), locks up to `limit` of the oldest rows after `afterId`
 * (`afterId`: the previous step's `lastId`, so rows `add` leaves do not fill every step of a pass; FOR UPDATE SKIP
 * LOCKED besides, for a row someone holds by hand), hands them to `add`, which answers the ids of the rows it placed
 * (its promise resolves only once they are), and deletes those. One at a time because relays of many processes
 * taking disjoint batches at once raced for the queue's room: the first script to reach Redis took it, a younger batch
 * went ahead of an older one, and its relay, having met no other row, let new events in with the older batch left.
 * A failure anywhere — `add`'s, the delete's, the commit's — leaves every row in place: the next step takes them again
 * and `add` must then find the ones it had placed (the job id is the event id), not place them twice.
 */
export async function moveOverflowEvents(
  prisma: PrismaClient,
  limit: number,
  afterId: bigint,
  add: (rows: readonly OverflowRow[]) => Promise<readonly bigint[]>,
): Promise<OverflowMove> {
  return prisma.$transaction(async (tx) => {
    const [turn] = await tx.$queryRaw<{ ours: boolean }[]>`
      SELECT pg_try_advisory_xact_lock(${RELAY_LOCK_CLASS}::int, hashtext(current_schema())) AS "ours"`;
    if (turn?.ours !== true) return { locked: 0, moved: 0, lastId: null, busy: true };
    const rows = await tx.$queryRaw<OverflowRow[]>`
      SELECT "id", "eventId", "payload" FROM "PublishOverflow" WHERE "id" > ${afterId}
      ORDER BY "id" LIMIT ${limit} FOR UPDATE SKIP LOCKED`;
    if (rows.length === 0) return { locked: 0, moved: 0, lastId: null, busy: false };
    const placed = await add(rows);
    const moved =
      placed.length === 0
        ? 0
        : await tx.$executeRaw`DELETE FROM "PublishOverflow" WHERE "id" = ANY(${[...placed]}::bigint[])`;
    return { locked: rows.length, moved, lastId: rows.at(-1)?.id ?? null, busy: false };
  });
}

/**
 * Rows in the table (wpn_worker_publish_overflow_rows), or a statement-timeout error after `timeoutMs`. The bound is
 * PostgreSQL's (SET LOCAL statement_timeout), not only its caller's: a count(*) of millions of rows, or one waiting on
 * a lock of the table, would otherwise run on — holding a pooled connection — until the pool's 30 s statement_timeout,
 * one more per scrape and process, long after the scrape stopped waiting.
 */
export async function countOverflowEvents(prisma: PrismaClient, timeoutMs: number): Promise<number> {
  return prisma.$transaction(async (tx) => {
    await tx.$executeRawUnsafe(`SET LOCAL statement_timeout = ${Math.max(1, Math.trunc(timeoutMs))}`);
    const [row] = await tx.$queryRaw<{ rows: bigint }[]>`SELECT count(*) AS "rows" FROM "PublishOverflow"`;
    return Number(row?.rows ?? 0n);
  });
}
