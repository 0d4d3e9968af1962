import { type ParsedNotification, type PrismaClient, type UpsertResult, upsertParsedNotification } from "@wpn/db";
import {
  type ApplyJob,
  NOTIFICATION_ID_MAX_LENGTH,
  type ParseJob,
  parseJobSchema,
  QueueName,
  v3EnvelopeIdOf,
  v3NotificationId,
} from "@wpn/queue";
import {
  eventTypeOf,
  keysNamedByRefusal,
  type NotificationSource,
  type OpenedNotification,
} from "../domain/notification.ts";
import { toWorkerError } from "../errors.ts";
import type { KeyResolver } from "../keys.ts";
import { openWithMerchantKeys } from "./open.ts";
import type { StageContext, StageDefinition, StageResult } from "./stage.ts";

export interface ParseDeps {
  /** Records a notification that cannot be opened (rare: on its own, not batched). */
  prisma: PrismaClient;
  keys: KeyResolver;
  /**
   * Records the parsed notification and, when its row is saved as PROCESSING as asked (not settled before),
   * enqueues `apply` (job id = notification id, so a re-run parse adds nothing while it waits); resolves with
   * the row's upsert result. In the worker: `ParseBatcher.commit` (group commit with concurrent jobs).
   */
  commit(row: ParsedNotification, apply: ApplyJob | null): Promise<UpsertResult>;
}

export interface ParseResult extends StageResult {
  /**
   * QUEUED (apply job enqueued), IGNORED (no effect to apply), ALREADY (settled before), DEAD (dead-lettered by the
   * apply stage before, whose failed job still holds the id: the row stays DEAD with a REDELIVERED entry, and that
   * letter's replay applies it). A row the parse stage dead-lettered is moved on (QUEUED): nothing holds the id.
   * DUPLICATE: a resend straddling a deploy of a notification recorded under its other id form (`duplicateOf`), settled
   * or on its way: recorded DUPLICATE, nothing enqueued (`upsertParsedNotification` of @wpn/db) — also for a re-run of
   * the job finding its row so (not ALREADY).
   */
  outcome: "QUEUED" | "IGNORED" | "ALREADY" | "DEAD" | "DUPLICATE";
  reason?: string;
  /** DUPLICATE: the id of the row this notification is a resend of. */
  duplicateOf?: string;
}

/**
 * Parse stage: open (decrypt, validate, classify) a verified notification, record it — Notification row with
 * headers, raw body (still encrypted), business keys, status, and its RECEIVED/PARSED timeline — and hand
 * effects to the apply stage. A notification that cannot be opened is recorded (so the dashboard shows it and
 * why) before its error dead-letters or retries the job.
 */
export async function handleParse(deps: ParseDeps, job: ParseJob, ctx: StageContext): Promise<ParseResult> {
  const source: NotificationSource =
    job.api === "v3" ? { api: "v3", body: job.body } : { api: "v2", v2Kind: job.kind, body: job.body };
  const row = {
    id: job.id,
    apiVersion: job.api,
    wechatId: job.api === "v3" ? v3EnvelopeIdOf(job.id) : null,
    otherFormId: otherFormIdOf(job),
    mchid: job.mchid,
    receivedAt: job.receivedAt,
    headers: job.api === "v3" ? { ...job.headers } : null,
    body: job.body,
  };
  let opened: OpenedNotification;
  try {
    opened = await openWithMerchantKeys(deps.keys, job.mchid, source);
  } catch (error) {
    const err = toWorkerError(error);
    // Not for a transient error (the database is often what failed). The row only needs to exist, with no entry of
    // its own: the dashboard shows the notification, and its dead letter can mark it DEAD. The stage writes the
    // attempt's entry — FAILED for one retried within the window (a key that does not fit yet), DEAD_LETTERED for a
    // permanent one: a FAILED entry here promised a next attempt that a permanent error never gets.
    // One refused after it opened keeps the order (and sub-merchant) it names, so a search by order finds it; its
    // letter and "dead-lettered" line carry the same (StageContext.setKeys).
    if (err.policy !== "retry") {
      const named = keysNamedByRefusal(error);
      if (named) ctx.setKeys(named);
      await upsertParsedNotification(deps.prisma, {
        ...row,
        eventType: eventTypeOf(source),
        status: "FAILED",
        outTradeNo: named?.outTradeNo ?? null,
        transactionId: null,
        outRefundNo: named?.outRefundNo ?? null,
        subMchid: named?.subMchid ?? null,
        errorCode: err.code,
        lastError: err.message,
        event: null,
      });
    }
    throw err;
  }
  ctx.setKeys(opened.keys);
  const status = opened.kind === "ignored" ? "IGNORED" : "PROCESSING";
  const detail: Record<string, unknown> = { stage: QueueName.Parse, kind: opened.kind, eventType: opened.eventType };
  if (opened.kind === "ignored") detail.reason = opened.reason;
  const apply: ApplyJob | null =
    opened.kind === "ignored"
      ? null
      : {
          v: 1,
          notificationId: job.id,
          api: job.api,
          kind: opened.kind,
          mchid: job.mchid,
          outTradeNo: opened.kind === "payment" ? opened.payment.outTradeNo : opened.refund.outTradeNo,
          receivedAt: job.receivedAt,
          body: job.body,
        };
  const saved = await deps.commit(
    {
      ...row,
      eventType: opened.eventType,
      status,
      ...opened.keys,
      errorCode: null,
      lastError: null,
      event: { kind: opened.kind === "ignored" ? "IGNORED" : "PARSED", detail },
    },
    apply,
  );
  if (saved.duplicateOf !== undefined) {
    ctx.log.info(
      { duplicateOf: saved.duplicateOf },
      "notification recorded before under its other id (a resend straddling a deploy); not applied again",
    );
    return { outcome: "DUPLICATE", duplicateOf: saved.duplicateOf };
  }
  if (saved.status === "DEAD") {
    ctx.log.info(
      { status: saved.status },
      "notification dead-lettered at apply delivered again; its letter waits for a replay",
    );
    return { outcome: "DEAD" };
  }
  if (saved.status !== status) {
    ctx.log.info({ status: saved.status }, "notification already settled");
    return { outcome: "ALREADY" };
  }
  if (opened.kind === "ignored") {
    ctx.log.info({ eventType: opened.eventType, reason: opened.reason }, "notification ignored");
    return { outcome: "IGNORED", reason: opened.reason };
  }
  return { outcome: "QUEUED" };
}

/**
 * The id an APIv3 notification has in the other form (@wpn/queue jobs/ids.ts): WeChat's envelope id alone for a
 * `v3:<mchid>:<envelope id>` job, and the reverse for a job an ingress from before those ids queued. Null for APIv2.
 */
function otherFormIdOf(job: ParseJob): string | null {
  if (job.api !== "v3") return null;
  return job.id.startsWith("v3:") ? v3EnvelopeIdOf(job.id) : v3NotificationId(job.mchid, job.id);
}

export function parseStage(deps: ParseDeps): StageDefinition<ParseJob, ParseResult> {
  return {
    queue: QueueName.Parse,
    schema: parseJobSchema,
    notificationIdOf: (data) => idField(data, "id"),
    outTradeNoOf: () => null,
    handle: (payload, ctx) => handleParse(deps, payload, ctx),
  };
}

/** A string field of a raw payload that may not match its schema (for logs and dead letters only). */
export function idField(data: unknown, name: string): string | null {
  const value = typeof data === "object" && data !== null ? (data as Record<string, unknown>)[name] : undefined;
  return typeof value === "string" && value.length > 0 && value.length <= NOTIFICATION_ID_MAX_LENGTH ? value : null;
}
