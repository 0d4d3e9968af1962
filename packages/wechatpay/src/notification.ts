import { parseV3Envelope, type V3Envelope } from "./envelope.ts";
import { WechatPayError } from "./errors.ts";
import { type RawHeaders, readV3Headers, type V3Headers } from "./headers.ts";
import { describeIssues } from "./json.ts";
import type { AsyncKeyResolver } from "./key-store.ts";
import { type RefundResult, RefundResultSchema, type Transaction, TransactionSchema } from "./payloads.ts";
import { decryptResource } from "./resource.ts";
import { verifyV3Async } from "./verify.ts";

export const REFUND_EVENT_TYPES = ["REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"] as const;
export type RefundEventType = (typeof REFUND_EVENT_TYPES)[number];

export type NotificationEvent =
  | {
      kind: "transaction";
      eventType: "TRANSACTION.SUCCESS" | (string & {});
      envelope: V3Envelope;
      transaction: Transaction;
    }
  | { kind: "refund"; eventType: RefundEventType; envelope: V3Envelope; refund: RefundResult }
  | { kind: "unknown"; eventType: string; envelope: V3Envelope; resource: unknown };

function isRefundEvent(eventType: string): eventType is RefundEventType {
  return (REFUND_EVENT_TYPES as readonly string[]).includes(eventType);
}

/**
 * Envelope → decrypt → validate by event type. Does NOT verify the signature: call `verifyV3`/`verifyV3Async`
 * first (or use `verifyAndOpenV3Notification`). Event types we have no schema for (PAYSCORE.*, VIOLATION.*,
 * TRANSACTION.FAIL, …) come back as `kind: "unknown"` with the decrypted JSON, not as an error, so a new
 * WeChat product never makes us answer FAIL forever.
 */
export function openV3Notification(
  body: Buffer | string,
  apiV3Key: Buffer,
  limits?: { maxBytes?: number },
): NotificationEvent {
  const envelope = parseV3Envelope(body, limits);
  return classifyV3Resource(envelope, decryptResource(envelope, apiV3Key));
}

/**
 * The validation half of `openV3Notification`, for a caller that decrypted the resource itself: it keeps the
 * decrypted JSON when the schema refuses it (the worker records the order number a refused notification names).
 */
export function classifyV3Resource(envelope: V3Envelope, resource: unknown): NotificationEvent {
  const eventType = envelope.event_type;
  if (eventType === "TRANSACTION.SUCCESS") {
    const parsed = TransactionSchema.safeParse(resource);
    if (!parsed.success) {
      throw new WechatPayError("PAYLOAD_INVALID", `${eventType} resource: ${describeIssues(parsed.error.issues)}`);
    }
    return { kind: "transaction", eventType, envelope, transaction: parsed.data };
  }
  if (isRefundEvent(eventType)) {
    const parsed = RefundResultSchema.safeParse(resource);
    if (!parsed.success) {
      throw new WechatPayError("PAYLOAD_INVALID", `${eventType} resource: ${describeIssues(parsed.error.issues)}`);
    }
    return { kind: "refund", eventType, envelope, refund: parsed.data };
  }
  return { kind: "unknown", eventType, envelope, resource };
}

export interface VerifiedNotification {
  headers: V3Headers;
  event: NotificationEvent;
}

/**
 * The whole inbound path in one call, in the order the protocol requires: read headers → verify the
 * signature over the raw bytes (RSA on the thread pool) → decrypt and validate. Throws WechatPayError.
 */
export async function verifyAndOpenV3Notification(args: {
  headers: RawHeaders;
  body: Buffer;
  keys: AsyncKeyResolver;
  apiV3Key: Buffer;
  now?: Date;
  toleranceSeconds?: number;
  maxBytes?: number;
}): Promise<VerifiedNotification> {
  const headers = readV3Headers(args.headers);
  await verifyV3Async(headers, args.body, { keys: args.keys, now: args.now, toleranceSeconds: args.toleranceSeconds });
  return { headers, event: openV3Notification(args.body, args.apiV3Key, { maxBytes: args.maxBytes }) };
}
