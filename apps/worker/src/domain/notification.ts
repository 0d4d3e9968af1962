import type { PaymentFacts, RefundFacts } from "@wpn/db";
import {
  classifyV3Resource,
  decryptResource,
  MAX_FEN,
  MAX_OUT_REFUND_NO_LENGTH,
  MAX_OUT_TRADE_NO_LENGTH,
  openV2RefundNotification,
  openWithKeyOrPrevious,
  parseV2Xml,
  parseV3Envelope,
  refundMerchant,
  transactionMerchant,
  verifyV2WithKeyOrPrevious,
} from "@wpn/wechatpay";
import { WorkerError } from "../errors.ts";
import type { MerchantKeySet } from "../keys.ts";
import { parseCompactChinaTime, parseRfc3339, parseSpacedChinaTime } from "./time.ts";

/** A stored notification as the queue carries it: the body stays as received until opened here. */
export interface NotificationSource {
  api: "v3" | "v2";
  /** APIv2 only: the route that received it (payment or refund notification). */
  v2Kind?: "pay" | "refund";
  body: string;
}

/** Business keys stored on the Notification row so the dashboard can search and link without decrypting. */
export interface BusinessKeys {
  outTradeNo: string | null;
  transactionId: string | null;
  outRefundNo: string | null;
  /**
   * Partner (服务商) mode: the sub-merchant the notification names — APIv3 `sub_mchid`, APIv2 `sub_mch_id` (signed in
   * a payment; in a refund the outer field, which is not signed: recorded as received, it is also what the apply
   * stage finds the order by). Null for a direct merchant. Out_trade_no is unique per sub-merchant only, and
   * WeChat's partner query and refund APIs need it, so a human clearing a review reads it here.
   */
  subMchid: string | null;
}

export type PaymentEffect = Omit<PaymentFacts, "notificationId">;
export type RefundEffect = Omit<RefundFacts, "notificationId" | "restockOnFullRefund" | "waitForTransaction">;

/** What a notification asks for, after decryption and validation. Contains payer data: never log it whole. */
export type OpenedNotification =
  | { kind: "payment"; eventType: string; keys: BusinessKeys; payment: PaymentEffect }
  | { kind: "refund"; eventType: string; keys: BusinessKeys; refund: RefundEffect }
  /** Verified and kept, but no business effect: unknown event type, a non-success state. */
  | { kind: "ignored"; eventType: string; keys: BusinessKeys; reason: string };

const REFUND_STATUS_V3 = { SUCCESS: "SUCCESS", ABNORMAL: "ABNORMAL", CLOSED: "CLOSED" } as const;
/** APIv2 `refund_status`: CHANGE is the abnormal case, REFUNDCLOSE the closed one (protocol notes §2.3). */
const REFUND_STATUS_V2 = { SUCCESS: "SUCCESS", CHANGE: "ABNORMAL", REFUNDCLOSE: "CLOSED" } as const;
const REFUND_EVENT = { SUCCESS: "REFUND.SUCCESS", ABNORMAL: "REFUND.ABNORMAL", CLOSED: "REFUND.CLOSED" } as const;

/**
 * Decrypts and classifies a notification. Pure (no I/O): the parse stage and the apply stage both call it on
 * the same bytes and get the same answer. Throws WechatPayError (DECRYPT_FAILED, PAYLOAD_INVALID, …) or
 * WorkerError(PAYLOAD_INVALID, permanent | APIV2_KEY_MISSING, retried within the window).
 */
export function openNotification(source: NotificationSource, keys: MerchantKeySet): OpenedNotification {
  if (source.api === "v3") return openV3(source.body, keys);
  if (source.v2Kind === "refund") return openV2Refund(source.body, keys);
  return openV2Payment(source.body, keys);
}

/**
 * The merchant a notification names must be the one whose keys authenticated it. An APIv2 `sign` is made with the
 * merchant's own key, so any merchant of a multi-merchant deployment can sign XML that names another merchant's
 * mch_id and orders; an APIv3 notification is as trustworthy as the keys of the merchant row that verified it.
 * Either way, a notification naming another merchant is refused (permanent, dead-lettered for a human), never
 * applied to that merchant's orders.
 */
function requireVerifyingMerchant(named: string, keys: MerchantKeySet): void {
  if (named !== keys.mchid) {
    throw WorkerError.of(
      "PAYLOAD_INVALID",
      `notification names merchant ${named}, but was authenticated with the keys of merchant ${keys.mchid}`,
    );
  }
}

function openV3(body: string, keys: MerchantKeySet): OpenedNotification {
  // Decrypted here, validated below: a resource its schema refuses still names its order (`namingOnRefusal`).
  const envelope = parseV3Envelope(body);
  const resource = openWithKeyOrPrevious((key) => decryptResource(envelope, key), keys.apiV3Key, keys.previousApiV3Key);
  return namingOnRefusal(namedKeysOf(resource), () => classifyV3(classifyV3Resource(envelope, resource), keys));
}

function classifyV3(event: ReturnType<typeof classifyV3Resource>, keys: MerchantKeySet): OpenedNotification {
  if (event.kind === "transaction") {
    const t = event.transaction;
    // Read as given: a payload ignored below is recorded even when it names no merchant (transactionMerchant throws).
    const businessKeys = {
      outTradeNo: t.out_trade_no,
      transactionId: t.transaction_id,
      outRefundNo: null,
      subMchid: t.sub_mchid ?? null,
    };
    // Only trade_state SUCCESS means paid (protocol notes §5.8), whatever the event type says.
    if (t.trade_state !== "SUCCESS") {
      return {
        kind: "ignored",
        eventType: event.eventType,
        keys: businessKeys,
        reason: `TRADE_STATE_${t.trade_state}`,
      };
    }
    const merchant = transactionMerchant(t);
    requireVerifyingMerchant(merchant.mchid, keys);
    const paidAt = parseRfc3339(requireSuccessTime(t.success_time, "transaction"), "success_time");
    return {
      kind: "payment",
      eventType: event.eventType,
      keys: businessKeys,
      payment: {
        outTradeNo: t.out_trade_no,
        transactionId: t.transaction_id,
        mchid: merchant.mchid,
        appid: merchant.appid,
        subMchid: merchant.subMchid ?? null,
        subAppid: merchant.subAppid ?? null,
        total: t.amount.total,
        currency: t.amount.currency,
        payerOpenid: t.payer?.openid ?? t.payer?.sub_openid ?? t.payer?.sp_openid ?? null,
        payerSpOpenid: merchant.subMchid ? (t.payer?.sp_openid ?? null) : null,
        paidAt,
      },
    };
  }
  if (event.kind === "refund") {
    const r = event.refund;
    const businessKeys = {
      outTradeNo: r.out_trade_no,
      transactionId: r.transaction_id,
      outRefundNo: r.out_refund_no,
      subMchid: r.sub_mchid ?? null,
    };
    const status = REFUND_STATUS_V3[r.refund_status as keyof typeof REFUND_STATUS_V3];
    if (status === undefined) {
      return {
        kind: "ignored",
        eventType: event.eventType,
        keys: businessKeys,
        reason: `REFUND_STATUS_${r.refund_status}`,
      };
    }
    const merchant = refundMerchant(r);
    requireVerifyingMerchant(merchant.mchid, keys);
    return {
      kind: "refund",
      // refund_status is authoritative over event_type (they agree in practice).
      eventType: REFUND_EVENT[status],
      keys: businessKeys,
      refund: {
        outTradeNo: r.out_trade_no,
        outRefundNo: r.out_refund_no,
        refundId: r.refund_id,
        transactionId: r.transaction_id,
        mchid: merchant.mchid,
        subMchid: merchant.subMchid ?? null,
        status,
        amountRefund: r.amount.refund,
        amountTotal: r.amount.total,
        successAt:
          status === "SUCCESS" ? parseRfc3339(requireSuccessTime(r.success_time, "refund"), "success_time") : null,
      },
    };
  }
  return { kind: "ignored", eventType: event.eventType, keys: keysOf(event.resource), reason: "EVENT_TYPE_UNHANDLED" };
}

function openV2Payment(body: string, keys: MerchantKeySet): OpenedNotification {
  const f = parseV2Xml(body);
  requireV2Sign(f, keys);
  // Every field is signed, sub_mch_id included.
  return namingOnRefusal(namedKeysOf({ out_trade_no: f.out_trade_no, sub_mchid: f.sub_mch_id }), () =>
    classifyV2Payment(f, keys),
  );
}

function classifyV2Payment(f: Record<string, string>, keys: MerchantKeySet): OpenedNotification {
  const businessKeys = {
    outTradeNo: f.out_trade_no ?? null,
    transactionId: f.transaction_id ?? null,
    outRefundNo: null,
    // Covered by the sign, like every field of an APIv2 payment.
    subMchid: f.sub_mch_id || null,
  };
  if (f.return_code !== "SUCCESS" || f.result_code !== "SUCCESS") {
    const reason = f.return_code !== "SUCCESS" ? "RETURN_CODE_FAIL" : "RESULT_CODE_FAIL";
    return { kind: "ignored", eventType: "TRANSACTION.FAIL", keys: businessKeys, reason };
  }
  const mchid = required(f, "mch_id");
  requireVerifyingMerchant(mchid, keys);
  return {
    kind: "payment",
    eventType: "TRANSACTION.SUCCESS",
    keys: businessKeys,
    payment: {
      outTradeNo: bounded(f, "out_trade_no", MAX_OUT_TRADE_NO_LENGTH),
      transactionId: required(f, "transaction_id"),
      mchid,
      appid: required(f, "appid"),
      subMchid: businessKeys.subMchid,
      subAppid: f.sub_appid || null,
      total: fen(f, "total_fee"),
      currency: f.fee_type || "CNY",
      payerOpenid: f.openid || f.sub_openid || null,
      // Partner: `openid` is the payer under the provider's appid (APIv3's sp_openid).
      payerSpOpenid: businessKeys.subMchid ? f.openid || null : null,
      paidAt: parseCompactChinaTime(required(f, "time_end"), "time_end"),
    },
  };
}

/**
 * The ingress verified the sign before it enqueued the payment; it is checked again here because an APIv2 payment,
 * unlike everything else, is clear text: a job that reached the queue some other way (anyone who can write to Redis)
 * must not mark an order paid. Current key, then the previous one (a payment queued before a rotation).
 */
function requireV2Sign(fields: Record<string, string>, keys: MerchantKeySet): void {
  if (keys.apiV2Key === null) {
    throw WorkerError.of("APIV2_KEY_MISSING", `merchant ${keys.mchid} has no APIv2 key to check the sign`);
  }
  verifyV2WithKeyOrPrevious(fields, keys.apiV2Key, keys.previousApiV2Key);
}

function openV2Refund(body: string, keys: MerchantKeySet): OpenedNotification {
  if (keys.apiV2Key === null) {
    throw WorkerError.of("APIV2_KEY_MISSING", `merchant ${keys.mchid} has no APIv2 key to decrypt req_info`);
  }
  // Only req_info is authenticated (it opens with the merchant's APIv2 key); the outer XML carries no
  // signature. So the outer return_code and mch_id decide nothing: a copy of a genuine req_info with
  // return_code=FAIL must not turn a refund into an ignored notification, and the merchant is the one whose
  // key opened it. sub_mch_id exists only outside: a forged one makes the refund look for that sub-merchant's order
  // under the number (the order is found by merchant, sub-merchant and out_trade_no). The refund statement checks it
  // against the transaction req_info names: held by another sub-merchant's order, it is SUB_MCHID_MISMATCH
  // (dead-lettered, nothing written on any order). So transaction_id is required, as in WeChat's field list (必填) and
  // the APIv3 refund schema: without it nothing could tell a resent sub_mch_id from the refund's own.
  const { outer, refund: f } = openWithKeyOrPrevious(
    (key) => openV2RefundNotification(body, key),
    keys.apiV2Key,
    keys.previousApiV2Key,
  );
  // Only req_info's fields: the outer sub_mch_id is not authenticated, so a refused refund is not listed under it.
  return namingOnRefusal(namedKeysOf({ out_trade_no: f.out_trade_no, out_refund_no: f.out_refund_no }), () =>
    classifyV2Refund(outer, f, keys),
  );
}

function classifyV2Refund(
  outer: Record<string, string>,
  f: Record<string, string>,
  keys: MerchantKeySet,
): OpenedNotification {
  const businessKeys = {
    outTradeNo: f.out_trade_no ?? null,
    transactionId: f.transaction_id ?? null,
    outRefundNo: f.out_refund_no ?? null,
    // The outer, unsigned sub_mch_id (see above), as received: the value the refund is applied under.
    subMchid: outer.sub_mch_id || null,
  };
  const status = REFUND_STATUS_V2[f.refund_status as keyof typeof REFUND_STATUS_V2];
  if (status === undefined) {
    return {
      kind: "ignored",
      eventType: "REFUND.UNKNOWN",
      keys: businessKeys,
      reason: `REFUND_STATUS_${f.refund_status ?? "MISSING"}`,
    };
  }
  return {
    kind: "refund",
    eventType: REFUND_EVENT[status],
    keys: businessKeys,
    refund: {
      outTradeNo: bounded(f, "out_trade_no", MAX_OUT_TRADE_NO_LENGTH),
      outRefundNo: bounded(f, "out_refund_no", MAX_OUT_REFUND_NO_LENGTH),
      refundId: f.refund_id || null,
      transactionId: required(f, "transaction_id"),
      mchid: keys.mchid,
      subMchid: businessKeys.subMchid,
      status,
      amountRefund: fen(f, "refund_fee"),
      amountTotal: fen(f, "total_fee"),
      // Optional in WeChat's APIv2 refund notification (unlike APIv3's, sent with every SUCCESS): a SUCCESS without it
      // is a refund WeChat made, recorded without its time rather than refused.
      successAt: status === "SUCCESS" && f.success_time ? parseSpacedChinaTime(f.success_time, "success_time") : null,
    },
  };
}

/**
 * The event type of a notification that could not be opened (no key, bad ciphertext), for its Notification
 * row: the APIv3 envelope is clear text; APIv2 bodies only tell their route.
 */
export function eventTypeOf(source: NotificationSource): string {
  if (source.api === "v2") return source.v2Kind === "refund" ? "REFUND.UNKNOWN" : "TRANSACTION.UNKNOWN";
  try {
    return parseV3Envelope(source.body).event_type;
  } catch {
    // The caller is already reporting why the notification cannot be opened; this is only a label.
    return "UNKNOWN";
  }
}

/**
 * The success_time of an APIv3 transaction or refund whose state is SUCCESS: WeChat sends it with every success (protocol
 * notes §1.9), and it is the time recorded as paid or refunded. One without it is no notification WeChat sent, refused
 * rather than recorded at another time (the envelope's create_time, or none).
 */
function requireSuccessTime(value: string | null | undefined, what: "transaction" | "refund"): string {
  if (value === undefined || value === null || value === "") {
    throw WorkerError.of("PAYLOAD_INVALID", `SUCCESS ${what} has no success_time`);
  }
  return value;
}

function required(fields: Record<string, string>, name: string): string {
  const value = fields[name];
  if (value === undefined || value === "") throw WorkerError.of("PAYLOAD_INVALID", `APIv2 field ${name} is missing`);
  return value;
}

/** An APIv2 merchant number (out_trade_no, out_refund_no): at most `max` characters, as the APIv3 schemas. */
function bounded(fields: Record<string, string>, name: string, max: number): string {
  const value = required(fields, name);
  if (value.length > max)
    throw WorkerError.of("PAYLOAD_INVALID", `APIv2 field ${name} is longer than ${max} characters`);
  return value;
}

/** An APIv2 amount: digits, at most MAX_FEN (WeChat's amounts are 32-bit `int`, as are the tables' columns). */
function fen(fields: Record<string, string>, name: string): number {
  const value = required(fields, name);
  if (!/^\d{1,10}$/.test(value) || Number(value) > MAX_FEN) {
    throw WorkerError.of("PAYLOAD_INVALID", `APIv2 field ${name} is not an amount in fen`);
  }
  return Number(value);
}

/**
 * Business keys of a resource we have no schema for, when it has the usual fields. `bounded`: the order and refund
 * numbers only of the length the payload schemas accept (@wpn/wechatpay payloads.ts), for a payload they refused,
 * which may hold anything in them.
 */
function keysOf(resource: unknown, bounded = false): BusinessKeys {
  const r = (typeof resource === "object" && resource !== null ? resource : {}) as Record<string, unknown>;
  const text = (v: unknown, max = Number.POSITIVE_INFINITY) =>
    typeof v === "string" && v !== "" && (!bounded || v.length <= max) ? v : null;
  return {
    outTradeNo: text(r.out_trade_no, MAX_OUT_TRADE_NO_LENGTH),
    transactionId: text(r.transaction_id),
    outRefundNo: text(r.out_refund_no, MAX_OUT_REFUND_NO_LENGTH),
    // The schemas ask only a non-empty string of sub_mchid (and the row's column is text).
    subMchid: text(r.sub_mchid),
  };
}

/**
 * Business keys an authenticated notification named before it was refused, by the error that refused it. The parse
 * stage records them on the refused notification's row, so the dashboard finds it by order or sub-merchant.
 */
const refusedKeys = new WeakMap<object, BusinessKeys>();

/**
 * Runs the validation of a notification already authenticated (decrypted, or its APIv2 sign verified); when it
 * refuses the notification, the error carries `named` for `keysNamedByRefusal`. Never for a notification that did not
 * open: nothing it says is WeChat's.
 */
function namingOnRefusal(named: BusinessKeys, classify: () => OpenedNotification): OpenedNotification {
  try {
    return classify();
  } catch (error) {
    if (typeof error === "object" && error !== null) refusedKeys.set(error, named);
    throw error;
  }
}

/** The business keys the notification refused with `error` named (see `namingOnRefusal`); null when it did not open. */
export function keysNamedByRefusal(error: unknown): BusinessKeys | null {
  return (typeof error === "object" && error !== null && refusedKeys.get(error)) || null;
}

/**
 * The out_trade_no, out_refund_no and sub_mchid an authenticated payload names, each only when it is of the form the
 * payload schemas accept (@wpn/wechatpay payloads.ts): a refused payload may hold anything in them. `fields`: the
 * APIv3 names (APIv2's sub_mch_id given as sub_mchid).
 */
function namedKeysOf(fields: unknown): BusinessKeys {
  return { ...keysOf(fields, true), transactionId: null };
}
