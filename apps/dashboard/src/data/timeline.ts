import type { Prisma } from "@wpn/db";
import { deadLetterSchema, decodeJob, isUsableJobId, QueueName, type Receipt, readReceipt } from "@wpn/queue";
import type { Job } from "bullmq";
import type { FastifyBaseLogger } from "fastify";
import type { DashboardContext } from "../context.ts";
import { notJsonReason } from "./not-json.ts";

/** One line of a notification's history, from whichever system saw it. */
export interface TimelineEntry {
  at: Date;
  source: string;
  title: string;
  detail?: unknown;
  tone: "ok" | "warn" | "bad" | "info" | "muted";
}

/** The BullMQ side of a notification, while Redis still has the job (completed jobs are trimmed after ~1 h). */
export interface JobSnapshot {
  queue: string;
  id: string;
  name: string;
  state: string;
  attemptsMade: number;
  timestamp: number;
  processedOn?: number;
  finishedOn?: number;
  failedReason?: string;
  delay: number;
  /** For a dead letter: why it was dead-lettered (code and one-line message; never the payload). */
  deadLetter?: { stage: string; code: string; message: string; attemptsMade: number };
  /** Why the job's hash cannot be read (then `state` is `unreadable` and its times are unknown: NaN). */
  unreadable?: string;
}

const NOTIFICATION_SELECT = {
  id: true,
  apiVersion: true,
  wechatId: true,
  mchid: true,
  eventType: true,
  receivedAt: true,
  headers: true,
  status: true,
  attempts: true,
  lastError: true,
  errorCode: true,
  outTradeNo: true,
  transactionId: true,
  outRefundNo: true,
  subMchid: true,
  appliedAt: true,
  createdAt: true,
  updatedAt: true,
  events: { orderBy: [{ at: "asc" }, { id: "asc" }] },
} satisfies Prisma.NotificationSelect;

// The order as the console needs it: no payer identity (payerOpenid stays in the database).
const ORDER_SELECT = {
  id: true,
  outTradeNo: true,
  mchid: true,
  appid: true,
  subMchid: true,
  amountTotal: true,
  currency: true,
  paidTotal: true,
  paidCurrency: true,
  status: true,
  reviewReason: true,
  transactionId: true,
  paidAt: true,
  refundedTotal: true,
  updatedAt: true,
} satisfies Prisma.OrderSelect;

export type TimelineNotification = Prisma.NotificationGetPayload<{ select: typeof NOTIFICATION_SELECT }>;
export type TimelineOrder = Prisma.OrderGetPayload<{ select: typeof ORDER_SELECT }>;

export interface Timeline {
  id: string;
  notification: TimelineNotification | null;
  /** Size of the stored body, bytes; the body itself (encrypted resource) is not shown. */
  bodyBytes: number | null;
  /**
   * The notification's order: the one of its merchant and sub-merchant under its out_trade_no (an order is
   * (outTradeNo, mchid, subMchid), as the worker finds it: WeChat makes out_trade_no unique only per merchant, per
   * sub-merchant in partner mode). A row that records no merchant has none; one that records no sub-merchant is a
   * direct merchant's (or was parsed before migration 20261202130000, when the Notification row had no sub-merchant).
   */
  order: TimelineOrder | null;
  /**
   * When the notification has no order of its own: the orders of other merchants or sub-merchants under that
   * out_trade_no (at most FOREIGN_ORDERS_SHOWN), their owners only, none of their details.
   */
  foreignOrders: ForeignOrder[];
  refund: {
    outRefundNo: string;
    /** WeChat's refund number (refund_id), as on its bills; null on refunds recorded without one. */
    refundId: string | null;
    status: string;
    amountRefund: number;
    amountTotal: number;
    successTime: Date | null;
    /** Set when the refund was recorded but not counted in the order's refundedTotal. */
    reviewReason: string | null;
  } | null;
  jobs: JobSnapshot[];
  receipt: Receipt | undefined;
  entries: TimelineEntry[];
}

/** How many other merchants' orders under one out_trade_no a notification's page names. */
export const FOREIGN_ORDERS_SHOWN = 10;

/** Whose order an out_trade_no names, when it is not the notification's merchant's. */
export interface ForeignOrder {
  outTradeNo: string;
  mchid: string;
  subMchid: string | null;
}

/**
 * Everything known about one notification id: its row and events in PostgreSQL, its jobs in BullMQ (parse,
 * apply, and dead letters), and the ingress receipt in Redis (first delivery, redeliveries from WeChat).
 * Any part can be missing: Redis forgets completed jobs and receipts, and a notification that never reached
 * a worker has no row yet.
 */
export async function loadTimeline(ctx: DashboardContext, id: string, log: FastifyBaseLogger): Promise<Timeline> {
  const prisma = ctx.db.prisma;
  const [notification, bodyBytes, receipt] = await Promise.all([
    prisma.notification.findUnique({ where: { id }, select: NOTIFICATION_SELECT }),
    bodySize(ctx, id),
    readReceipt(ctx.redis, ctx.prefix, id),
  ]);
  const [jobs, linked] = await Promise.all([
    loadJobs(ctx, id, deadLetterIds(notification?.events ?? []), log),
    notification ? loadOrder(ctx, notification) : { order: null, foreignOrders: [], refund: null },
  ]);
  return { id, notification, bodyBytes, ...linked, jobs, receipt, entries: buildEntries(notification, jobs, receipt) };
}

/**
 * The notification's order, its refund under the notification's out_refund_no, and otherwise the other merchants'
 * orders under its out_trade_no. Each read goes through an index leading with the order (Order's key leads with
 * outTradeNo, Refund's with orderId).
 */
async function loadOrder(
  ctx: DashboardContext,
  notification: TimelineNotification,
): Promise<Pick<Timeline, "order" | "foreignOrders" | "refund">> {
  const prisma = ctx.db.prisma;
  const { outTradeNo, mchid, subMchid, outRefundNo } = notification;
  if (!outTradeNo) return { order: null, foreignOrders: [], refund: null };
  const order =
    mchid === null
      ? null
      : await prisma.order.findFirst({ where: { outTradeNo, mchid, subMchid }, select: ORDER_SELECT });
  if (order === null) {
    const foreignOrders = await prisma.order.findMany({
      where: { outTradeNo },
      select: { outTradeNo: true, mchid: true, subMchid: true },
      orderBy: [{ mchid: "asc" }, { subMchid: "asc" }],
      take: FOREIGN_ORDERS_SHOWN,
    });
    return { order: null, foreignOrders, refund: null };
  }
  // A refund is its order's (Refund's key is (orderId, outRefundNo)): merchants of one deployment may use the same
  // out_trade_no and out_refund_no.
  const refund = outRefundNo
    ? await prisma.refund.findFirst({
        where: { orderId: order.id, outRefundNo },
        select: {
          outRefundNo: true,
          refundId: true,
          status: true,
          amountRefund: true,
          amountTotal: true,
          successTime: true,
          reviewReason: true,
        },
      })
    : null;
  return { order, foreignOrders: [], refund };
}

async function bodySize(ctx: DashboardContext, id: string): Promise<number | null> {
  const result = await ctx.db.pool.query<{ bytes: number }>(
    `SELECT octet_length("body")::int AS bytes FROM "Notification" WHERE "id" = $1`,
    [id],
  );
  return result.rows[0]?.bytes ?? null;
}

/**
 * Ids of the notification's dead letters. A letter's id includes the failed job instance's timestamp (so a
 * replayed job that fails again gets a new letter), so it cannot be derived from the notification id: the
 * worker records it in the DEAD_LETTERED event.
 */
function deadLetterIds(events: readonly { kind: string; detail: Prisma.JsonValue }[]): string[] {
  return events.flatMap((event) => {
    const detail = event.detail;
    if (event.kind !== "DEAD_LETTERED" || typeof detail !== "object" || detail === null || Array.isArray(detail)) {
      return [];
    }
    return typeof detail.deadLetterId === "string" ? [detail.deadLetterId] : [];
  });
}

/**
 * Jobs use the notification id as their id in parse and apply; dead letters are found through their events. An id
 * that cannot be a job id (`isUsableJobId`: the ingress refuses such a notification) has no job, and looking it up
 * would read the queue's own keys — `events` is a stream (WRONGTYPE), `meta` a hash (a phantom job). Not the
 * ingress's narrower isNotificationId: a notification queued before the `v3:<mchid>:<id>` form has WeChat's id alone
 * as its jobs' id.
 */
async function loadJobs(
  ctx: DashboardContext,
  id: string,
  letterIds: readonly string[],
  log: FastifyBaseLogger,
): Promise<JobSnapshot[]> {
  const lookups: { queue: QueueName; jobId: string }[] = [
    { queue: QueueName.Parse, jobId: id },
    { queue: QueueName.Apply, jobId: id },
    ...letterIds.map((jobId) => ({ queue: QueueName.Dead, jobId })),
  ].filter(({ jobId }) => isUsableJobId(jobId));
  const found = await Promise.all(
    lookups.map(async ({ queue, jobId }) => {
      let job: Job | undefined;
      try {
        job = (await ctx.queues[queue].getJob(jobId)) as Job | undefined;
      } catch (error) {
        // BullMQ parses the hash's JSON fields (`data`, `opts`) as it reads a job: one that is not JSON (a write cut
        // short, a hand edit) is that job unreadable, shown as such, not the whole page failed.
        if (!(error instanceof SyntaxError)) throw error;
        const reason = notJsonReason("job hash", error);
        log.warn({ code: "JOB_UNREADABLE", queue, jobId, reason }, "a job's hash cannot be read");
        return unreadableJob(queue, jobId, reason);
      }
      return job ? snapshot(queue, job) : undefined;
    }),
  );
  return found.filter((j): j is JobSnapshot => j !== undefined);
}

function unreadableJob(queue: string, id: string, reason: string): JobSnapshot {
  return {
    queue,
    id,
    name: "",
    state: "unreadable",
    attemptsMade: 0,
    timestamp: Number.NaN,
    delay: 0,
    unreadable: reason,
  };
}

async function snapshot(queue: string, job: Job): Promise<JobSnapshot> {
  const letter = queue === QueueName.Dead ? decodeJob(deadLetterSchema, job.data) : undefined;
  return {
    queue,
    id: job.id ?? "",
    name: job.name,
    state: await job.getState(),
    attemptsMade: job.attemptsMade,
    timestamp: job.timestamp,
    processedOn: job.processedOn,
    finishedOn: job.finishedOn,
    failedReason: job.failedReason || undefined,
    delay: job.delay,
    deadLetter: letter?.ok
      ? {
          stage: letter.value.queue,
          code: letter.value.code,
          message: letter.value.message,
          attemptsMade: letter.value.attemptsMade,
        }
      : undefined,
  };
}

function buildEntries(
  notification: TimelineNotification | null,
  jobs: JobSnapshot[],
  receipt: Receipt | undefined,
): TimelineEntry[] {
  const entries: TimelineEntry[] = [];
  if (receipt) {
    entries.push({
      at: new Date(receipt.first),
      source: "ingress",
      title: "Received, verified and enqueued (first delivery)",
      tone: "info",
    });
    if (receipt.count > 1) {
      entries.push({
        at: new Date(receipt.last),
        source: "ingress",
        title: `Redelivered by WeChat: ${receipt.count - 1} more time(s), latest here`,
        detail: { deliveries: receipt.count },
        tone: "warn",
      });
    }
  }
  if (notification) {
    if (!receipt) {
      entries.push({ at: notification.receivedAt, source: "ingress", title: "Received and verified", tone: "info" });
    }
    for (const event of notification.events) {
      entries.push({
        at: event.at,
        source: "database",
        title: event.kind,
        detail: event.detail ?? undefined,
        tone: eventTone(event.kind),
      });
    }
    const hasAppliedEvent = notification.events.some((e) => e.kind === "APPLIED");
    if (notification.appliedAt && !hasAppliedEvent) {
      entries.push({ at: notification.appliedAt, source: "database", title: "Applied (committed)", tone: "ok" });
    }
  }
  for (const job of jobs) {
    // Nothing of it can be dated: the page's job table shows it.
    if (job.unreadable !== undefined) continue;
    const where = job.queue === QueueName.Dead ? "dead-letter queue" : job.queue;
    if (job.deadLetter) {
      entries.push({
        at: new Date(job.timestamp),
        source: where,
        title: `Dead-lettered from ${job.deadLetter.stage} after ${job.deadLetter.attemptsMade} attempt(s): ${job.deadLetter.code}`,
        detail: job.deadLetter.message,
        tone: "bad",
      });
      continue;
    }
    entries.push({ at: new Date(job.timestamp), source: where, title: `Job ${job.id} enqueued`, tone: "info" });
    if (job.processedOn) {
      entries.push({
        at: new Date(job.processedOn),
        source: where,
        title: `Attempt ${Math.max(1, job.attemptsMade)} started`,
        tone: "muted",
      });
    }
    if (job.finishedOn) {
      const failed = job.state === "failed";
      entries.push({
        at: new Date(job.finishedOn),
        source: where,
        title: failed ? `Job failed after ${job.attemptsMade} attempt(s)` : `Job ${job.state}`,
        // BullMQ keeps the last failure on a job that later succeeded: say it was an earlier attempt.
        detail: job.failedReason && !failed ? `an earlier attempt failed: ${job.failedReason}` : job.failedReason,
        tone: failed ? "bad" : "ok",
      });
    } else if (job.failedReason) {
      entries.push({
        at: new Date(job.processedOn ?? job.timestamp),
        source: where,
        title: `Attempt ${job.attemptsMade} failed; state now ${job.state}`,
        detail: job.failedReason,
        tone: "warn",
      });
    }
  }
  return entries.sort((a, b) => a.at.getTime() - b.at.getTime());
}

function eventTone(kind: string): TimelineEntry["tone"] {
  if (kind === "APPLIED" || kind === "DUPLICATE") return "ok";
  if (kind === "FAILED" || kind === "REVIEW" || kind === "REPLAYED") return "warn";
  if (kind.startsWith("DEAD")) return "bad";
  if (kind === "ATTEMPT") return "muted";
  return "info";
}
