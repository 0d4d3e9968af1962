import { classifyDbError } from "@wpn/db";
import { isKeyMismatch, isWechatPayError } from "@wpn/wechatpay";

/**
 * How a failed attempt continues:
 * - `retry`: transient (database or Redis down, deadlock, serialization failure, pool timeout); BullMQ
 *   retries with exponential backoff and jitter until the queue's attempts run out.
 * - `window`: the data we need is not there yet (an order the checkout has not committed, a refund whose
 *   payment has not been applied, the key WeChat used after a rotation); retried like `retry`, but only for
 *   WORKER_UNKNOWN_ORDER_RETRY_SECONDS from the job's creation (or from the end of a later PostgreSQL outage:
 *   stage.ts, windowEnd), then dead-lettered — the window, not the attempts: on its last attempt the job waits for the
 *   window's end without using one (stage.ts, failureVerdict).
 * - `stop`: permanent; retrying cannot help (bad key, bad payload, unknown payload version); the job goes
 *   straight to `notify.dead` with the code.
 */
export type RetryPolicy = "retry" | "window" | "stop";

/**
 * Stable error codes of the worker (SCREAMING_SNAKE, never renamed). Codes of @wpn/wechatpay
 * (DECRYPT_FAILED, PAYLOAD_INVALID, ENVELOPE_INVALID, XML_INVALID, …) and of @wpn/db's classifier (DB_UNAVAILABLE,
 * DB_CONFLICT, DB_LOCK_TIMEOUT, DB_STATEMENT_TIMEOUT, DB_CONSTRAINT, DB_DATA, DB_ERROR) pass through unchanged. Review reasons
 * (AMOUNT_MISMATCH, MCHID_MISMATCH, TRANSACTION_CONFLICT, DUPLICATE_MISMATCH, APPID_MISMATCH, CURRENCY_MISMATCH, OUT_OF_STOCK,
 * PAID_AFTER_CLOSE, DUPLICATE_PAYMENT, UNEXPECTED_ORDER_STATUS, TRANSACTION_MISMATCH, REFUND_CONFLICT,
 * REFUND_ID_CONFLICT, REFUND_AMOUNT_MISMATCH, DUPLICATE_PAYMENT_REFUNDED, RESTOCK_OUT_OF_RANGE, REFUND_ABNORMAL,
 * REFUND_CLOSED) are outcomes, not errors: they are committed, counted and logged, and the job completes.
 */
export const WORKER_ERROR_CODES = {
  /** The job payload does not match its schema. */
  JOB_INVALID: "stop",
  /** The job payload has a version (`v`) this worker does not know. */
  JOB_VERSION_UNSUPPORTED: "stop",
  /** No keys for the notification's merchant (not the default merchant, not an enabled `Merchant` row). */
  MERCHANT_UNKNOWN: "stop",
  /**
   * An APIv2 notification for a merchant without an APIv2 key, which an ingress accepted: the key is on its way — added
   * to a `Merchant` row after this worker cached it (read afresh once first, workers/open.ts), or WECHATPAY_APIV2_KEY
   * in a rolling deploy that restarted the ingresses before this worker.
   */
  APIV2_KEY_MISSING: "window",
  /** The decrypted payload lacks a field the effect needs, or has one in an unusable form. */
  PAYLOAD_INVALID: "stop",
  /** An apply job whose Notification row does not exist. */
  NOTIFICATION_NOT_FOUND: "stop",
  /**
   * A refund whose transaction (authenticated: inside APIv2 req_info, APIv3's resource) is another sub-merchant's of
   * the same merchant than the one it names — an order of that other sub-merchant holds it, or a second charge of one.
   * An APIv2 refund's outer sub_mch_id is not signed: a genuine refund resent under another sub-merchant's id. Nothing
   * was written on any order; retrying cannot change whose transaction it is.
   */
  SUB_MCHID_MISMATCH: "stop",
  /** A payment or refund for an out_trade_no with no order (yet). */
  ORDER_NOT_FOUND: "window",
  /**
   * A refund — successful, ABNORMAL or CLOSED — for an order whose payment has not been applied (yet): its transaction
   * cannot be compared with the order's before. Past the window, dead-lettered with the code whatever its status.
   */
  ORDER_NOT_PAID: "window",
  /**
   * A refund naming a transaction that is neither its order's nor a second charge of it recorded (yet): that charge's
   * payment may be delivered after its refund. Past the window the refund is decided TRANSACTION_MISMATCH (review)
   * rather than dead-lettered: the apply stage asks StageContext.windowOver before failing the attempt. Never for a
   * transaction the database shows to be another order's: that is TRANSACTION_MISMATCH at once.
   */
  TRANSACTION_NOT_SEEN: "window",
  /** The order kept changing under the statement (see STALE in @wpn/db); try again later. */
  ORDER_CONTENDED: "retry",
  /** Redis refused or timed out while enqueueing the next stage. */
  QUEUE_UNAVAILABLE: "retry",
  /** Anything unexpected: retried (bounded by attempts), logged with the stack. */
  INTERNAL: "retry",
} as const satisfies Record<string, RetryPolicy>;

export type WorkerErrorCode = keyof typeof WORKER_ERROR_CODES;

export class WorkerError extends Error {
  override readonly name = "WorkerError";
  constructor(
    readonly code: string,
    readonly policy: RetryPolicy,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  static of(code: WorkerErrorCode, message: string, options?: { cause?: unknown }): WorkerError {
    return new WorkerError(code, WORKER_ERROR_CODES[code], message, options);
  }
}

export function isWorkerError(e: unknown): e is WorkerError {
  return e instanceof WorkerError;
}

/**
 * Every @wpn/wechatpay error reaching the worker is about the stored notification itself (it was verified
 * at the ingress; the bytes do not change): permanent — except a key that does not fit (`isKeyFault`).
 */
export function toWorkerError(error: unknown): WorkerError {
  if (error instanceof WorkerError) return error;
  if (isWechatPayError(error)) {
    return new WorkerError(error.code, isKeyFault(error) ? "window" : "stop", error.message, { cause: error });
  }
  const db = classifyDbError(error);
  if (db.code !== "DB_ERROR" || db.sqlstate !== undefined) {
    const message = `${db.sqlstate ? `SQLSTATE ${db.sqlstate}: ` : ""}${oneLine(error)}`;
    return new WorkerError(db.code, db.transient ? "retry" : "stop", message, { cause: error });
  }
  return WorkerError.of("INTERNAL", oneLine(error), { cause: error });
}

/**
 * The merchant's key, not the notification, is at fault: the key did not open it (DECRYPT_FAILED), did not
 * reproduce an APIv2 payment's sign the ingress accepted (V2_SIGN_INVALID), or is not a usable key at all
 * (KEY_INVALID: a Merchant row stored before its length was checked). The ingress verified the notification, so
 * this worker holds another key than the one WeChat used — a rotation not yet deployed to this process, a row
 * edited badly. Retried within the unknown-order window (a Merchant row's keys are read afresh on each mismatch),
 * so deploying the right key in time loses nothing; past the window, dead-lettered as before.
 */
function isKeyFault(error: unknown): boolean {
  return isKeyMismatch(error) || (isWechatPayError(error) && error.code === "KEY_INVALID");
}

/** First line of an error's message, bounded: Prisma messages are multi-line and quote the query. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("Invalid `prisma"));
  return (lines.at(-1) ?? text).slice(0, 300);
}
