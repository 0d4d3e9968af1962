import { ALL_QUEUES, type QueueName } from "@wpn/queue";
import type { DashboardContext } from "../context.ts";
import { countReviews } from "./reviews.ts";

export const BUCKET_MS = 60_000;
export const BUCKETS = 60;

export interface QueueDepth {
  name: QueueName;
  paused: boolean;
  counts: Record<string, number>;
}

export interface Overview {
  /** Start of the first one-minute bucket, ms since the epoch; the last bucket is the current minute. */
  start: number;
  receivedPerMinute: number[];
  appliedPerMinute: number[];
  /** Per second, one point per bucket (`ratePerSecond`): whole minutes, then the last 60 s. */
  receivedRate: number[];
  appliedRate: number[];
  /** Receipt → commit latency per minute of commit, ms; null when nothing was applied that minute. */
  latencyP50: (number | null)[];
  latencyP99: (number | null)[];
  /** Over the last 60 s. */
  receivedPerSecond: number;
  appliedPerSecond: number;
  /** Over the hour. */
  receivedLastHour: number;
  appliedLastHour: number;
  latency: { p50: number | null; p99: number | null; count: number };
  statuses: { status: string; count: number }[];
  /**
   * Error codes the notifications received this hour carry now: how many carry the code, how many of them are
   * FAILED/DEAD. Applying a notification clears its code (its timeline keeps the FAILED entries): see `recovered`.
   */
  failures: { code: string; total: number; failing: number }[];
  /**
   * Notifications received this hour that are FAILED or DEAD now, all of them: `failures` lists only the most frequent
   * codes (`FAILURE_CODES_SHOWN`), whose sum misses the others.
   */
  failing: number;
  /** Notifications received this hour that are applied (APPLIED, DUPLICATE) after failed attempts (attempts > 1). */
  recovered: number;
  queues: QueueDepth[];
  /** What /reviews counts (`countReviews`): orders in PAYMENT_REVIEW, refunds not counted, notifications in review. */
  inReview: number;
}

// Columns are `timestamp(3)` holding UTC wall time. Parameters go in as epoch milliseconds and are turned into
// UTC wall time in SQL, and buckets come out as epoch numbers, so neither the pg client's nor the database
// session's time zone can shift anything.
const at = (n: number) => `(to_timestamp($${n}::double precision / 1000) AT TIME ZONE 'UTC')`;
const epochMs = (column: string) => `(extract(epoch from ${column}) * 1000)::double precision`;

/**
 * A per-minute series as a rate per second. The last bucket is the current minute, still filling: its count over
 * 60 s read 0.10/s for a steady 1/s six seconds into the minute, and its count over the seconds elapsed swings
 * wildly early in a minute (one arrival in the first second reads 1/s). It takes the rate over the last 60 s
 * instead — the "Received /s" and "Applied /s" cards' figure — so the chart's "now" is that figure too.
 */
export function ratePerSecond(perMinute: readonly number[], lastSixtySecondsPerSecond: number): number[] {
  return perMinute.map((n, i) => (i === perMinute.length - 1 ? lastSixtySecondsPerSecond : n / 60));
}

/** One row of `RECEIVED_STATEMENT`: a grouping set's group. */
interface ReceivedGroup {
  /** Which grouping set: per minute of receipt, per status, per errorCode, or the whole window. */
  kind: "minute" | "status" | "code" | "all";
  minute: string | null;
  status: string | null;
  code: string | null;
  n: number;
  /** Of them, FAILED or DEAD now. */
  failing: number;
  /** Of them, received in the last 60 s. */
  recent: number;
  /** Of them, APPLIED or DUPLICATE after failed attempts (each recorded one counts an attempt; a clean apply one). */
  recovered: number;
}

/**
 * The notifications received in the window [$1, $2), grouped four ways in one read of their rows: per minute of
 * receipt, per status, per error code, and all of them (with those received since $3).
 */
const RECEIVED_STATEMENT = `
  SELECT CASE WHEN GROUPING(minute) = 0 THEN 'minute' WHEN GROUPING(status) = 0 THEN 'status'
              WHEN GROUPING(code) = 0 THEN 'code' ELSE 'all' END AS kind,
         minute, status, code, count(*)::int AS n,
         count(*) FILTER (WHERE status IN ('FAILED', 'DEAD'))::int AS failing,
         count(*) FILTER (WHERE "receivedAt" >= ${at(3)})::int AS recent,
         count(*) FILTER (WHERE status IN ('APPLIED', 'DUPLICATE') AND attempts > 1)::int AS recovered
    FROM (SELECT floor(${epochMs('"receivedAt"')} / ${BUCKET_MS})::bigint AS minute, status::text AS status,
                 "errorCode" AS code, "receivedAt", attempts
            FROM "Notification" WHERE "receivedAt" >= ${at(1)} AND "receivedAt" < ${at(2)}) AS received
   GROUP BY GROUPING SETS ((minute), (status), (code), ())`;

/** One row of `APPLIED_STATEMENT`: a minute of commit, or (`total` 1) the whole window. */
interface AppliedGroup {
  total: number;
  minute: string | null;
  n: number;
  p50: number | null;
  p99: number | null;
  /** Of them, applied since $4 and received since $5. */
  recent: number;
}

/**
 * The notifications applied in the window [$1, $2) among those received since $3, per minute of commit and in all
 * (ROLLUP: one sort, one read of their rows), with their receipt → commit latency percentiles, ms.
 */
const APPLIED_STATEMENT = `
  SELECT GROUPING(minute) AS total, minute, count(*)::int AS n,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY latency) AS p50,
         percentile_cont(0.99) WITHIN GROUP (ORDER BY latency) AS p99,
         count(*) FILTER (WHERE "appliedAt" >= ${at(4)} AND "receivedAt" >= ${at(5)})::int AS recent
    FROM (SELECT floor(${epochMs('"appliedAt"')} / ${BUCKET_MS})::bigint AS minute,
                 ${epochMs('"appliedAt"')} - ${epochMs('"receivedAt"')} AS latency, "appliedAt", "receivedAt"
            FROM "Notification"
           WHERE "receivedAt" >= ${at(3)} AND "appliedAt" >= ${at(1)} AND "appliedAt" < ${at(2)}) AS applied
   GROUP BY ROLLUP (minute)`;

/**
 * The last hour at a glance, from PostgreSQL (Notification.receivedAt/appliedAt/status/errorCode) and BullMQ
 * job counts. Every query is bounded by `receivedAt` (indexed). Consequence, stated on the page: a
 * notification applied this hour but received more than an hour before it (a long retry) is not counted in
 * the applied series.
 *
 * Two statements, each reading the rows it needs once: on a sale day these are the rows the workers are writing, whose
 * heap pages are not all-visible yet, so every read goes to the heap (some 40,000 pages for 300,000 notifications an
 * hour), through the shared buffers the workers use. Six statements, one per figure, read them six times, two of
 * them over two hours (apps/dashboard/test/overview-plans.test.ts).
 */
export async function loadOverview(ctx: DashboardContext): Promise<Overview> {
  const nowMs = ctx.now().getTime();
  const end = Math.floor(nowMs / BUCKET_MS) * BUCKET_MS + BUCKET_MS;
  const start = end - BUCKETS * BUCKET_MS;
  const pool = ctx.db.pool;
  const lookback = start - 3_600_000;
  // The cards' "last 60 s", inside the window (which ends after now and starts 59 minutes before its minute).
  const lastMinute = nowMs - 60_000;

  const [received, applied, queues, inReview] = await Promise.all([
    pool.query<ReceivedGroup>(RECEIVED_STATEMENT, [start, end, lastMinute]),
    pool.query<AppliedGroup>(APPLIED_STATEMENT, [start, end, lookback, lastMinute, lastMinute - 3_600_000]),
    loadQueueDepths(ctx),
    countReviews(ctx.db.prisma, ctx.now()).then((counts) => counts.total),
  ]);

  const index = (minute: string) => Number(minute) - start / BUCKET_MS;
  const receivedPerMinute = new Array<number>(BUCKETS).fill(0);
  const statuses: Overview["statuses"] = [];
  const failures: Overview["failures"] = [];
  let receivedLastMinute = 0;
  let failing = 0;
  let recovered = 0;
  for (const row of received.rows) {
    if (row.kind === "minute" && row.minute !== null) {
      const i = index(row.minute);
      if (i >= 0 && i < BUCKETS) receivedPerMinute[i] = row.n;
    } else if (row.kind === "status" && row.status !== null) statuses.push({ status: row.status, count: row.n });
    else if (row.kind === "code" && row.code !== null) {
      failures.push({ code: row.code, total: row.n, failing: row.failing });
    } else if (row.kind === "all") {
      receivedLastMinute = row.recent;
      failing = row.failing;
      recovered = row.recovered;
    }
  }
  statuses.sort((a, b) => b.count - a.count);
  failures.sort((a, b) => b.total - a.total);

  const appliedPerMinute = new Array<number>(BUCKETS).fill(0);
  const latencyP50 = new Array<number | null>(BUCKETS).fill(null);
  const latencyP99 = new Array<number | null>(BUCKETS).fill(null);
  const percentile = (value: number | null | undefined) =>
    value === null || value === undefined ? null : Number(value);
  let overall: AppliedGroup | undefined;
  for (const row of applied.rows) {
    if (row.total === 1 || row.minute === null) {
      overall = row;
      continue;
    }
    const i = index(row.minute);
    if (i < 0 || i >= BUCKETS) continue;
    appliedPerMinute[i] = row.n;
    latencyP50[i] = percentile(row.p50);
    latencyP99[i] = percentile(row.p99);
  }
  const receivedPerSecond = receivedLastMinute / 60;
  const appliedPerSecond = (overall?.recent ?? 0) / 60;
  return {
    start,
    receivedPerMinute,
    appliedPerMinute,
    receivedRate: ratePerSecond(receivedPerMinute, receivedPerSecond),
    appliedRate: ratePerSecond(appliedPerMinute, appliedPerSecond),
    latencyP50,
    latencyP99,
    receivedPerSecond,
    appliedPerSecond,
    receivedLastHour: receivedPerMinute.reduce((a, b) => a + b, 0),
    appliedLastHour: appliedPerMinute.reduce((a, b) => a + b, 0),
    latency: { count: overall?.n ?? 0, p50: percentile(overall?.p50), p99: percentile(overall?.p99) },
    statuses,
    failures: failures.slice(0, FAILURE_CODES_SHOWN),
    failing,
    recovered,
    queues,
    inReview,
  };
}

/** Error codes the failures table lists, the most frequent first. */
const FAILURE_CODES_SHOWN = 20;

export const QUEUE_STATES = ["waiting", "active", "delayed", "prioritized", "failed", "completed"] as const;

export async function loadQueueDepths(ctx: DashboardContext): Promise<QueueDepth[]> {
  return Promise.all(
    ALL_QUEUES.map(async (name) => {
      const queue = ctx.queues[name];
      const [counts, paused] = await Promise.all([queue.getJobCounts(...QUEUE_STATES), queue.isPaused()]);
      return { name, paused, counts };
    }),
  );
}
