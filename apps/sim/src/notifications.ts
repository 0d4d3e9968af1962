import { type KeyObject, randomInt } from "node:crypto";
import {
  buildV2Xml,
  createSignedV3Notification,
  encryptV2ReqInfo,
  formatChinaTime,
  randomNonce,
  signV2,
  signV3Headers,
  unixSeconds,
  type V2SignType,
} from "@wpn/wechatpay";
import type { SimKeys } from "./keys.ts";

/**
 * The notifications WeChat Pay sends, built with @wpn/wechatpay's own signing and encryption functions
 * (createSignedV3Notification, signV3Message, encryptAeadAes256Gcm, signV2, encryptV2ReqInfo, buildV2Xml):
 * the simulator never carries a second implementation of the protocol.
 *
 * A notification is built once (its body, id and encrypted resource stay the same for every delivery, as
 * WeChat's do) and signed afresh for each delivery attempt: new timestamp and nonce (v3), new nonce_str
 * and sign (v2).
 */

export type Api = "v3" | "v2";
/** Which WeChat Pay key signs a v3 notification: the public key (`PUB_KEY_ID_…`) or the platform certificate. */
export type Signer = "public-key" | "certificate";
export const SIGNERS: readonly Signer[] = ["public-key", "certificate"];

export interface Payment {
  mchid: string;
  appid: string;
  outTradeNo: string;
  transactionId: string;
  /** fen */
  amount: number;
  openid: string;
  successTime: Date;
}

export type RefundStatus = "SUCCESS" | "ABNORMAL" | "CLOSED";
export const REFUND_STATUSES: readonly RefundStatus[] = ["SUCCESS", "ABNORMAL", "CLOSED"];

export interface Refund {
  mchid: string;
  appid: string;
  outTradeNo: string;
  transactionId: string;
  outRefundNo: string;
  refundId: string;
  /** Order total, fen. */
  total: number;
  /** Refunded amount, fen. */
  refund: number;
  status: RefundStatus;
  successTime: Date;
}

/** One HTTP request of a delivery attempt. */
export interface SignedRequest {
  headers: Record<string, string>;
  body: Buffer;
}

export interface Notification {
  api: Api;
  /** v3: the envelope `id`; v2: the id the ingress derives (`v2:pay:<mchid>.<transaction_id>[.FAIL]`, `v2:refund:<mchid>.<refund_id>.<refund_status>`). */
  id: string;
  eventType: string;
  /** What was encrypted/signed, for printing. */
  plaintext: unknown;
  /** The request of one delivery attempt, signed at `now`. */
  sign(now?: Date): SignedRequest;
}

// ---------------------------------------------------------------------------------------------------------
// Identifiers shaped like WeChat's

function digits(n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) out += String(randomInt(10));
  return out;
}

/** `yyyyMMddHHmmss` in China time (v2 `time_end`). */
export function chinaCompactTime(date: Date): string {
  return formatChinaTime(date).slice(0, 19).replace(/[-T:]/g, "");
}

/** `yyyy-MM-dd HH:mm:ss` in China time (v2 refund `success_time`). */
export function chinaSpacedTime(date: Date): string {
  return formatChinaTime(date).slice(0, 19).replace("T", " ");
}

/** 28 digits starting 4200000, like real transaction ids. */
export function newTransactionId(): string {
  return `4200000${digits(21)}`;
}

/** 29 digits starting 50000, like real refund ids. */
export function newRefundId(): string {
  return `50000${digits(24)}`;
}

export function newOutTradeNo(now = new Date()): string {
  return `SIM${chinaCompactTime(now)}${digits(6)}`;
}

export function newOutRefundNo(now = new Date()): string {
  return `SIMR${chinaCompactTime(now)}${digits(6)}`;
}

export function newOpenid(): string {
  return `oSim${randomNonce(24)}`;
}

// ---------------------------------------------------------------------------------------------------------
// APIv3

/** Decrypted `resource` of TRANSACTION.SUCCESS (protocol notes §1.9). */
export function transactionResource(p: Payment): Record<string, unknown> {
  return {
    mchid: p.mchid,
    appid: p.appid,
    out_trade_no: p.outTradeNo,
    transaction_id: p.transactionId,
    trade_type: "JSAPI",
    trade_state: "SUCCESS",
    trade_state_desc: "支付成功",
    bank_type: "OTHERS",
    attach: "",
    success_time: formatChinaTime(p.successTime),
    payer: { openid: p.openid },
    amount: { total: p.amount, payer_total: p.amount, currency: "CNY", payer_currency: "CNY" },
  };
}

/** Decrypted `resource` of REFUND.SUCCESS / ABNORMAL / CLOSED. */
export function refundResource(r: Refund): Record<string, unknown> {
  const resource: Record<string, unknown> = {
    mchid: r.mchid,
    out_trade_no: r.outTradeNo,
    transaction_id: r.transactionId,
    out_refund_no: r.outRefundNo,
    refund_id: r.refundId,
    refund_status: r.status,
  };
  if (r.status === "SUCCESS") resource.success_time = formatChinaTime(r.successTime);
  resource.user_received_account = "支付用户零钱";
  resource.amount = { total: r.total, refund: r.refund, payer_total: r.total, payer_refund: r.refund };
  return resource;
}

const REFUND_SUMMARY: Record<RefundStatus, string> = { SUCCESS: "退款成功", ABNORMAL: "退款异常", CLOSED: "退款关闭" };

export interface V3SignOptions {
  signer?: Signer;
  now?: Date;
}

/** The key and `Wechatpay-Serial` of a signer. */
export function signerKey(keys: SimKeys, signer: Signer): { privateKey: KeyObject; serial: string } {
  return signer === "certificate"
    ? { privateKey: keys.certificatePrivateKey, serial: keys.certificateSerial }
    : { privateKey: keys.publicKeyPrivateKey, serial: keys.publicKeyId };
}

function v3Notification(
  keys: SimKeys,
  args: {
    eventType: string;
    summary: string;
    originalType: string;
    resource: Record<string, unknown>;
    signer: Signer;
    now: Date;
    id?: string;
  },
): Notification {
  const { privateKey, serial } = signerKey(keys, args.signer);
  const created = createSignedV3Notification({
    ...(args.id === undefined ? {} : { id: args.id }),
    eventType: args.eventType,
    summary: args.summary,
    originalType: args.originalType,
    resource: args.resource,
    apiV3Key: Buffer.from(keys.apiV3Key, "utf8"),
    privateKey,
    serial,
    now: args.now,
  });
  let first = true;
  return {
    api: "v3",
    id: created.id,
    eventType: args.eventType,
    plaintext: args.resource,
    sign(now = new Date()) {
      // The first delivery uses the headers createSignedV3Notification made (if still in the same second);
      // every other one is re-signed with a fresh timestamp and nonce over the unchanged body.
      const reuse = first && unixSeconds(now) === created.headers["Wechatpay-Timestamp"];
      first = false;
      if (reuse) return { headers: { ...created.headers }, body: created.body };
      return { headers: signV3Headers(created.body, { privateKey, serial, now }), body: created.body };
    },
  };
}

export function v3Payment(keys: SimKeys, payment: Payment, opts: V3SignOptions & { id?: string } = {}): Notification {
  return v3Notification(keys, {
    eventType: "TRANSACTION.SUCCESS",
    summary: "支付成功",
    originalType: "transaction",
    resource: transactionResource(payment),
    signer: opts.signer ?? "public-key",
    now: opts.now ?? new Date(),
    ...(opts.id === undefined ? {} : { id: opts.id }),
  });
}

export function v3Refund(keys: SimKeys, refund: Refund, opts: V3SignOptions & { id?: string } = {}): Notification {
  return v3Notification(keys, {
    eventType: `REFUND.${refund.status}`,
    summary: REFUND_SUMMARY[refund.status],
    originalType: "refund",
    resource: refundResource(refund),
    signer: opts.signer ?? "public-key",
    now: opts.now ?? new Date(),
    ...(opts.id === undefined ? {} : { id: opts.id }),
  });
}

// ---------------------------------------------------------------------------------------------------------
// APIv2

export const V2_SIGN_TYPES: readonly V2SignType[] = ["MD5", "HMAC-SHA256"];
const XML_HEADERS = { "Content-Type": "text/xml; charset=utf-8" };

/** Fields of a v2 payment notification, without `nonce_str`, `sign_type` and `sign` (protocol notes §2.1). */
export function v2PaymentFields(p: Payment): Record<string, string> {
  return {
    return_code: "SUCCESS",
    return_msg: "OK",
    appid: p.appid,
    mch_id: p.mchid,
    result_code: "SUCCESS",
    openid: p.openid,
    is_subscribe: "N",
    trade_type: "JSAPI",
    bank_type: "OTHERS",
    total_fee: String(p.amount),
    fee_type: "CNY",
    cash_fee: String(p.amount),
    transaction_id: p.transactionId,
    out_trade_no: p.outTradeNo,
    time_end: chinaCompactTime(p.successTime),
  };
}

/**
 * The fields of one signed v2 delivery: `fields` plus a fresh `nonce_str`, `sign_type` (by default only for
 * HMAC-SHA256: WeChat omits it for MD5 and receivers must then assume MD5) and `sign`, computed by
 * @wpn/wechatpay's signV2 over every field but `sign` (protocol notes §2.2).
 */
export function signV2Fields(
  fields: Record<string, string>,
  apiV2Key: string,
  signType: V2SignType,
  opts: { nonce?: string; signTypeField?: boolean } = {},
): Record<string, string> {
  const unsigned: Record<string, string> = { ...fields, nonce_str: opts.nonce ?? randomNonce(32) };
  if (opts.signTypeField ?? signType === "HMAC-SHA256") unsigned.sign_type = signType;
  return { ...unsigned, sign: signV2(unsigned, apiV2Key, signType) };
}

export function v2Payment(keys: SimKeys, payment: Payment, signType: V2SignType = "MD5"): Notification {
  const fields = v2PaymentFields(payment);
  return {
    api: "v2",
    id: `v2:pay:${fields.mch_id}.${payment.transactionId}`,
    eventType: "TRANSACTION.SUCCESS",
    plaintext: fields,
    sign() {
      return {
        headers: { ...XML_HEADERS },
        body: Buffer.from(buildV2Xml(signV2Fields(fields, keys.apiV2Key, signType)), "utf8"),
      };
    },
  };
}

const V2_REFUND_STATUS: Record<RefundStatus, string> = {
  SUCCESS: "SUCCESS",
  ABNORMAL: "CHANGE",
  CLOSED: "REFUNDCLOSE",
};

/** The `req_info` plaintext fields (protocol notes §2.3, vector V12). */
export function v2RefundFields(r: Refund): Record<string, string> {
  const fields: Record<string, string> = {
    out_refund_no: r.outRefundNo,
    out_trade_no: r.outTradeNo,
    refund_account: "REFUND_SOURCE_RECHARGE_FUNDS",
    refund_fee: String(r.refund),
    refund_id: r.refundId,
    refund_recv_accout: "支付用户零钱",
    refund_request_source: "API",
    refund_status: V2_REFUND_STATUS[r.status],
    settlement_refund_fee: String(r.refund),
    settlement_total_fee: String(r.total),
  };
  if (r.status === "SUCCESS") fields.success_time = chinaSpacedTime(r.successTime);
  fields.total_fee = String(r.total);
  fields.transaction_id = r.transactionId;
  return fields;
}

/** v2 refund notification: no `sign`; `req_info` = AES-256-ECB under md5(APIv2 key), via encryptV2ReqInfo. */
export function v2Refund(keys: SimKeys, refund: Refund): Notification {
  const inner = v2RefundFields(refund);
  const reqInfo = encryptV2ReqInfo(inner, keys.apiV2Key);
  return {
    api: "v2",
    id: `v2:refund:${refund.mchid}.${refund.refundId}.${inner.refund_status}`,
    eventType: `REFUND.${refund.status}`,
    plaintext: inner,
    sign() {
      const outer = {
        return_code: "SUCCESS",
        appid: refund.appid,
        mch_id: refund.mchid,
        nonce_str: randomNonce(32),
        req_info: reqInfo,
      };
      return { headers: { ...XML_HEADERS }, body: Buffer.from(buildV2Xml(outer), "utf8") };
    },
  };
}
