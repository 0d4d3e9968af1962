import { parseJobV2Schema } from "@wpn/queue";
import {
  decryptV2ReqInfo,
  openWithKeyOrPrevious,
  parseV2Xml,
  V2_REPLY_CONTENT_TYPE,
  V2_REPLY_STATUS,
  v2Reply,
  verifyV2WithKeyOrPrevious,
} from "@wpn/wechatpay";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { IngressError } from "../errors.ts";
import { budgetLeftMs } from "./budget.ts";
import type { MerchantParams, NotifyContext } from "./context.ts";
import { lookupMerchant } from "./merchant.ts";
import { registerNotifyRoutes } from "./register.ts";

/** Content types WeChat and proxies use for APIv2 notifications. */
const XML_TYPES = ["text/xml", "application/xml"];

/**
 * APIv2 routes: `POST /notify/v2` and `POST /notify/v2/:mchid`, enabled per merchant by an APIv2 key.
 * - payment notification (has `sign`): `verifyV2` (MD5 or HMAC-SHA256), `mch_id` must be the route's merchant →
 *   id `v2:pay:<mchid>.<transaction_id>` (`….FAIL` unless return_code and result_code are both SUCCESS). The sign is
 *   made with the merchant's own key, so it proves only which merchant signed: XML naming another merchant is
 *   refused, and the merchant is part of the id — otherwise one merchant could take another's transaction id and
 *   have the genuine notification answered as a redelivery;
 * - refund notification (has `req_info`, no `sign`): authenticated by decrypting `req_info` with the key
 *   → id `v2:refund:<mchid>.<refund_id>.<refund_status>[.<sub_mch_id>]`. refund_id is WeChat's own refund number, the same on
 *   every delivery of one refund; out_refund_no is not usable: it is the requesting merchant's number, and in
 *   partner mode every sub-merchant's refunds arrive under the service provider's key and route, so two
 *   sub-merchants' refund "1" would share an id and the second be answered as a redelivery, never applied (the
 *   outer sub_mch_id is not signed). The merchant whose key opened req_info is part of the id all the same, so one
 *   tenant cannot take another's refund id; and one refund can be notified more than once with different outcomes
 *   (CHANGE, then SUCCESS once the merchant has handled the abnormal refund), so the status is too. In partner mode
 *   the outer sub_mch_id follows (`….<sub_mch_id>`; none for a direct merchant, or an empty one): it is unsigned, and
 *   the worker applies the refund under it, so a copy of a genuine req_info resent under another sub_mch_id must
 *   not take the genuine delivery's id — it would be decided first (against that sub-merchant's order, or none) and
 *   the genuine one answered as its redelivery, never applied. `.` occurs in none of the parts.
 * The raw XML (with `req_info` still encrypted) is what the job carries. Success is HTTP 200 with WeChat's
 * exact SUCCESS XML, only after Redis confirmed the job.
 */
export async function notifyV2Routes(app: FastifyInstance, ctx: NotifyContext): Promise<void> {
  registerNotifyRoutes(app, ctx, "v2", XML_TYPES, handleV2);
}

async function handleV2(
  ctx: NotifyContext,
  request: FastifyRequest<{ Params: MerchantParams }>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const receivedAt = ctx.clock();
  const mchid = request.params.mchid;
  let merchant = mchid === undefined ? ctx.merchants.defaultMerchant : ctx.merchants.get(mchid);
  if (merchant && merchant.apiV2Key === undefined) throw new IngressError("V2_DISABLED");
  const body = request.body;
  if (!Buffer.isBuffer(body)) throw new IngressError("UNSUPPORTED_MEDIA_TYPE", "request has no XML body");
  // Hostile-input-safe parse (no DTD/entities, size and depth capped, invalid UTF-8 refused) before any
  // merchant lookup, so junk never costs a merchant-table reload.
  const fields = parseV2Xml(body, { maxBytes: ctx.settings.bodyLimitBytes });
  if (merchant === undefined && mchid !== undefined) merchant = await lookupMerchant(ctx.merchants, mchid);
  if (merchant === undefined) throw new IngressError("MERCHANT_UNKNOWN", `no merchant ${mchid}`);
  if (merchant.apiV2Key === undefined) throw new IngressError("V2_DISABLED");

  const { kind, id } = authenticate(fields, merchant.apiV2Key, merchant.apiV2KeyPrevious, merchant.mchid);
  const job = parseJobV2Schema.safeParse({
    v: 1,
    api: "v2",
    id,
    kind,
    mchid: merchant.mchid,
    receivedAt,
    body: body.toString("utf8"),
  });
  if (!job.success) throw new IngressError("PAYLOAD_INVALID", "notification does not fit the parse job schema");
  const outcome = await ctx.intake.accept("v2", id, job.data, budgetLeftMs(reply));
  request.ingressCode = outcome.kind === "enqueued" ? "OK" : "DUPLICATE";
  request.log.debug({ id, kind, mchid: merchant.mchid, outcome: request.ingressCode }, "notification accepted");
  return reply.code(V2_REPLY_STATUS).type(V2_REPLY_CONTENT_TYPE).send(v2Reply(true));
}

/**
 * Authenticates the notification and derives its id; throws V2_SIGN_INVALID, DECRYPT_FAILED, PAYLOAD_INVALID or, for
 * WeChat's unsigned return_code FAIL notification, V2_RETURN_FAIL.
 * The previous APIv2 key (WECHATPAY_APIV2_KEY_PREVIOUS, `apiV2KeyPrevious`) is accepted too while it is configured:
 * configuring the new key before WeChat switches, or after, then loses no notification either way; an operator who
 * rotates because the old key leaked leaves it out.
 */
function authenticate(
  fields: Record<string, string>,
  apiV2Key: string,
  previousKey: string | undefined,
  mchid: string,
): { kind: "pay" | "refund"; id: string } {
  if (fields.sign !== undefined) {
    verifyV2WithKeyOrPrevious(fields, apiV2Key, previousKey);
    if (fields.mch_id !== mchid) throw new IngressError("PAYLOAD_INVALID", "mch_id is not the merchant of this route");
    const transactionId = requireTransactionId(fields.transaction_id);
    // A notification that is not a success (the worker ignores it) must not take the id of the transaction's
    // success, which would then be answered as its redelivery and never applied.
    const succeeded = fields.return_code === "SUCCESS" && fields.result_code === "SUCCESS";
    return { kind: "pay" as const, id: `v2:pay:${mchid}.${transactionId}${succeeded ? "" : ".FAIL"}` };
  }
  const reqInfo = fields.req_info;
  if (reqInfo !== undefined) {
    const inner = openWithKeyOrPrevious((key) => decryptV2ReqInfo(reqInfo, key), apiV2Key, previousKey);
    requireOutRefundNo(inner.out_refund_no);
    const refundId = requireRefundId(inner.refund_id);
    const status = requireRefundStatus(inner.refund_status);
    // As the worker reads it: an empty sub_mch_id names no sub-merchant.
    const subMchid = fields.sub_mch_id ? `.${requireSubMchid(fields.sub_mch_id)}` : "";
    return { kind: "refund" as const, id: `v2:refund:${mchid}.${refundId}.${status}${subMchid}` };
  }
  // Unsigned by design (protocol notes §2.1), not a forgery: told apart from a missing sign. The detail quotes WeChat's
  // reason for the log (clipped there like every detail).
  if (fields.return_code === "FAIL") {
    throw new IngressError("V2_RETURN_FAIL", `return_msg ${JSON.stringify(fields.return_msg ?? "")}`);
  }
  throw new IngressError("V2_SIGN_INVALID", "neither sign nor req_info present");
}

/** WeChat's rule for out_refund_no: 1–64 of digits, letters and `_-|*@` (so never `.` or `:`). */
function requireOutRefundNo(value: string | undefined): string {
  if (value === undefined || !/^[0-9A-Za-z_\-|*@]{1,64}$/.test(value)) {
    throw new IngressError("PAYLOAD_INVALID", "out_refund_no is missing or malformed");
  }
  return value;
}

/** WeChat's refund_id: its own refund number, digits (≤32; letters and up to 64 accepted, never `.` or `:`). */
function requireRefundId(value: string | undefined): string {
  if (value === undefined || !/^[0-9A-Za-z]{1,64}$/.test(value)) {
    throw new IngressError("PAYLOAD_INVALID", "refund_id is missing or malformed");
  }
  return value;
}

/** WeChat's refund_status (SUCCESS, CHANGE, REFUNDCLOSE): an upper-case word. */
function requireRefundStatus(value: string | undefined): string {
  if (value === undefined || !/^[A-Z]{1,32}$/.test(value)) {
    throw new IngressError("PAYLOAD_INVALID", "refund_status is missing or malformed");
  }
  return value;
}

/** WeChat's sub_mch_id: a merchant number, digits (letters and up to 32 accepted, never `.` or `:`). */
function requireSubMchid(value: string): string {
  if (!/^[0-9A-Za-z]{1,32}$/.test(value)) throw new IngressError("PAYLOAD_INVALID", "sub_mch_id is malformed");
  return value;
}

/**
 * WeChat's transaction_id: its own payment number, 28–32 digits (letters and up to 64 accepted, never `.`, `:` or
 * white space): a signed `X.FAIL` would otherwise take the id of X's failed notification and be answered as its
 * redelivery, never applied.
 */
function requireTransactionId(value: string | undefined): string {
  if (value === undefined || !/^[0-9A-Za-z]{1,64}$/.test(value)) {
    throw new IngressError("PAYLOAD_INVALID", "transaction_id is missing or malformed");
  }
  return value;
}
