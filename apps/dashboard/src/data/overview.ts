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
  /** Error codes of notifications received this hour: how many carry the code, how many are failing/dead now. */
  failures: { code: string; total: number; failing: number }[];
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

/**
 * The last hour at a glance, from PostgreSQL (Notification.receivedAt/appliedAt/status/errorCode) and BullMQ
 * job counts. Every query is bounded by `receivedAt` (indexed). Consequence, stated on the page: a
 * notification applied this hour but received more than an hour before it (a long retry) is not counted in
 * the applied series.
 */
export async function loadOverview(ctx: DashboardContext): Promise<Overview> {
  const nowMs = ctx.now().getTime();
  const end = Math.floor(nowMs / BUCKET_MS) * BUCKET_MS + BUCKET_MS;
  const start = end - BUCKETS * BUCKET_MS;
  const pool = ctx.db.pool;
  const lookback = start - 3_600_000;

  const [received, applied, latency, statuses, failures, recent, queues, inReview] = await Promise.all([
    pool.query<{ minute: string; n: number }>(
      `SELECT floor(${epochMs('"receivedAt"')} / ${BUCKET_MS})::bigint AS minute, count(*)::int AS n
         FROM "Notification" WHERE "receivedAt" >= ${at(1)} AND "receivedAt" < ${at(2)} GROUP BY 1`,
      [start, end],
    ),
    pool.query<{ minute: string; n: number; p50: number | null; p99: number | null }>(
      `SELECT floor(${epochMs('"appliedAt"')} / ${BUCKET_MS})::bigint AS minute, count(*)::int AS n,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ${epochMs('"appliedAt"')} - ${epochMs('"receivedAt"')}) AS p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ${epochMs('"appliedAt"')} - ${epochMs('"receivedAt"')}) AS p99
         FROM "Notification"
        WHERE "receivedAt" >= ${at(3)} AND "appliedAt" >= ${at(1)} AND "appliedAt" < ${at(2)} GROUP BY 1`,
      [start, end, lookback],
    ),
    pool.query<{ n: number; p50: number | null; p99: number | null }>(
      `SELECT count(*)::int AS n,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ${epochMs('"appliedAt"')} - ${epochMs('"receivedAt"')}) AS p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ${epochMs('"appliedAt"')} - ${epochMs('"receivedAt"')}) AS p99
         FROM "Notification"
        WHERE "receivedAt" >= ${at(3)} AND "appliedAt" >= ${at(1)} AND "appliedAt" < ${at(2)}`,
      [start, end, lookback],
    ),
    pool.query<{ status: string; n: number }>(
      `SELECT status::text AS status, count(*)::int AS n FROM "Notification"
        WHERE "receivedAt" >= ${at(1)} AND "receivedAt" < ${at(2)} GROUP BY 1 ORDER BY 2 DESC`,
      [start, end],
    ),
    pool.query<{ code: string; total: number; failing: number }>(
      `SELECT "errorCode" AS code, count(*)::int AS total,
              count(*) FILTER (WHERE status IN ('FAILED', 'DEAD'))::int AS failing
         FROM "Notification"
        WHERE "receivedAt" >= ${at(1)} AND "receivedAt" < ${at(2)} AND "errorCode" IS NOT NULL
        GROUP BY 1 ORDER BY 2 DESC LIMIT 20`,
      [start, end],
    ),
    pool.query<{ received: number; applied: number }>(
      `SELECT count(*) FILTER (WHERE "receivedAt" >= ${at(1)})::int AS received,
              count(*) FILTER (WHERE "appliedAt" >= ${at(1)})::int AS applied
         FROM "Notification" WHERE "receivedAt" >= ${at(2)}`,
      [nowMs - 60_000, nowMs - 60_000 - 3_600_000],
    ),
    loadQueueDepths(ctx),
    countReviews(ctx.db.prisma, ctx.now()).then((counts) => counts.total),
  ]);

  const index = (minute: string) => Number(minute) - start / BUCKET_MS;
  const receivedPerMinute = new Array<number>(BUCKETS).fill(0);
  for (const row of received.rows) {
    const i = index(row.minute);
    if (i >= 0 && i < BUCKETS) receivedPerMinute[i] = row.n;
  }
  const appliedPerMinute = new Array<number>(BUCKETS).fill(0);
  const latencyP50 = new Array<number | null>(BUCKETS).fill(null);
  const latencyP99 = new Array<number | null>(BUCKETS).fill(null);
  for (const row of applied.rows) {
    const i = index(row.minute);
    if (i < 0 || i >= BUCKETS) continue;
    appliedPerMinute[i] = row.n;
    latencyP50[i] = row.p50 === null ? null : Number(row.p50);
    latencyP99[i] = row.p99 === null ? null : Number(row.p99);
  }
  const overall = latency.rows[0];
  const recentRow = recent.rows[0];
  const receivedPerSecond = (recentRow?.received ?? 0) / 60;
  const appliedPerSecond = (recentRow?.applied ?? 0) / 60;
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
    latency: {
      count: overall?.n ?? 0,
      p50: overall?.p50 === null || overall?.p50 === undefined ? null : Number(overall.p50),
      p99: overall?.p99 === null || overall?.p99 === undefined ? null : Number(overall.p99),
    },
    statuses: statuses.rows.map((r) => ({ status: r.status, count: r.n })),
    failures: failures.rows,
    queues,
    inReview,
  };
}

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
