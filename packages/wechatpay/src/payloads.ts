import { z } from "zod";
import { WechatPayError } from "./errors.ts";

/**
 * Schemas of the decrypted resources (protocol notes §1.9). Objects are "loose": fields WeChat adds later
 * are kept, never stripped, so the worker can store the payload as received. Amounts are integers in fen
 * (分, 1/100 CNY).
 *
 * Only what a payment or refund is applied with is declared, and checked strictly: ids, amounts, currency, state,
 * times, the merchant and sub-merchant ids (and the payer's openid, stored). Everything else WeChat sends
 * (trade_type, attach, bank_type, scene_info, promotion_detail, payer_total, user_received_account, …) is kept
 * as received whatever its shape: a signed notification WeChat will not resend must not be dead-lettered for a
 * field nobody reads. An optional field we use may be null, read as absent.
 */

/**
 * Largest amount in fen: WeChat Pay's API reference types every amount `int` (32-bit signed). A larger one is not a
 * notification WeChat sent, and would not fit the order tables' integer columns either (a DB_DATA dead letter
 * instead of this PAYLOAD_INVALID).
 */
export const MAX_FEN = 2_147_483_647;

const fen = z.number().int().nonnegative().max(MAX_FEN);

/**
 * Longest out_trade_no and out_refund_no accepted, characters. WeChat Pay's API reference types out_trade_no
 * string(32) (6 to 32 characters when the order is created) and out_refund_no string(64). Both are bounded at 64, at
 * or above WeChat's, so no notification WeChat sends is refused, while what the queue carries stays bounded: the
 * apply job's `outTradeNo` (@wpn/queue) has this same bound, so a longer value is PAYLOAD_INVALID when the
 * notification is opened, not a JOB_INVALID dead letter at every apply. WeChat's lower bound is not checked: a short
 * value refused would only leave a payment WeChat made unapplied.
 */
export const MAX_OUT_TRADE_NO_LENGTH = 64;
export const MAX_OUT_REFUND_NO_LENGTH = 64;

const outTradeNo = z.string().min(1).max(MAX_OUT_TRADE_NO_LENGTH);
const outRefundNo = z.string().min(1).max(MAX_OUT_REFUND_NO_LENGTH);

const amountSchema = z.looseObject({
  total: fen,
  currency: z.string(),
});

const payerSchema = z.looseObject({
  openid: z.string().nullish(),
  sp_openid: z.string().nullish(),
  sub_openid: z.string().nullish(),
});

export const TransactionSchema = z
  .looseObject({
    // Direct merchant (直连商户)…
    mchid: z.string().min(1).optional(),
    appid: z.string().min(1).optional(),
    // …or service provider (服务商) ordering for a sub-merchant.
    sp_mchid: z.string().min(1).optional(),
    sub_mchid: z.string().min(1).optional(),
    sp_appid: z.string().min(1).optional(),
    sub_appid: z.string().min(1).optional(),
    out_trade_no: outTradeNo,
    transaction_id: z.string().min(1),
    /** Only `SUCCESS` means paid (protocol notes §5.8); the schema does not decide that for the caller. */
    trade_state: z.string().min(1),
    /** RFC 3339, e.g. 2018-06-08T10:34:56+08:00 */
    success_time: z.string().nullish(),
    payer: payerSchema.nullish(),
    amount: amountSchema,
  })
  .refine(
    (t) =>
      (t.mchid !== undefined && t.appid !== undefined) ||
      (t.sp_mchid !== undefined && t.sub_mchid !== undefined && t.sp_appid !== undefined),
    { message: "needs mchid+appid (direct merchant) or sp_mchid+sub_mchid+sp_appid (service provider)" },
  );

export type Transaction = z.infer<typeof TransactionSchema>;

export const RefundResultSchema = z
  .looseObject({
    mchid: z.string().min(1).optional(),
    sp_mchid: z.string().min(1).optional(),
    sub_mchid: z.string().min(1).optional(),
    out_trade_no: outTradeNo,
    transaction_id: z.string().min(1),
    out_refund_no: outRefundNo,
    refund_id: z.string().min(1),
    /** SUCCESS | CLOSED | ABNORMAL (PROCESSING only appears in query APIs). Authoritative over event_type. */
    refund_status: z.string().min(1),
    success_time: z.string().nullish(),
    amount: z.looseObject({ total: fen, refund: fen }),
  })
  .refine((r) => r.mchid !== undefined || (r.sp_mchid !== undefined && r.sub_mchid !== undefined), {
    message: "needs mchid (direct merchant) or sp_mchid+sub_mchid (service provider)",
  });

export type RefundResult = z.infer<typeof RefundResultSchema>;

export interface TransactionMerchant {
  /** The merchant that received the money: `mchid`, or the service provider's `sp_mchid`. */
  mchid: string;
  appid: string;
  subMchid?: string;
  subAppid?: string;
}

/**
 * Who a transaction belongs to, in one shape for both merchant modes: compare it with configuration before
 * trusting the payment (protocol notes §5.8: "假通知").
 */
export function transactionMerchant(t: Transaction): TransactionMerchant {
  if (t.sp_mchid !== undefined && t.sp_appid !== undefined) {
    const result: TransactionMerchant = { mchid: t.sp_mchid, appid: t.sp_appid };
    if (t.sub_mchid !== undefined) result.subMchid = t.sub_mchid;
    if (t.sub_appid !== undefined) result.subAppid = t.sub_appid;
    return result;
  }
  if (t.mchid !== undefined && t.appid !== undefined) {
    // A direct merchant's payload names no sub-merchant. Read as the provider's own, one naming sub_mchid or
    // sub_appid would pay the provider's direct order while its notification recorded the sub-merchant.
    if (t.sub_mchid !== undefined || t.sub_appid !== undefined) {
      throw new WechatPayError("PAYLOAD_INVALID", "transaction names a sub-merchant without sp_mchid and sp_appid");
    }
    return { mchid: t.mchid, appid: t.appid };
  }
  throw new WechatPayError("PAYLOAD_INVALID", "transaction names no merchant (mchid/appid or sp_mchid/sp_appid)");
}

/** Same for refunds: `{ mchid, subMchid? }`. */
export function refundMerchant(r: RefundResult): { mchid: string; subMchid?: string } {
  if (r.sp_mchid !== undefined) {
    return r.sub_mchid === undefined ? { mchid: r.sp_mchid } : { mchid: r.sp_mchid, subMchid: r.sub_mchid };
  }
  if (r.mchid !== undefined) {
    // As for transactions: a sub-merchant's refund read as the provider's own would be applied to its direct order.
    if (r.sub_mchid !== undefined) {
      throw new WechatPayError("PAYLOAD_INVALID", "refund names a sub-merchant without sp_mchid");
    }
    return { mchid: r.mchid };
  }
  throw new WechatPayError("PAYLOAD_INVALID", "refund names no merchant (mchid or sp_mchid)");
}
