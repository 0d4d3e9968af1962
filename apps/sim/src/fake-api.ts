import { verify as cryptoVerify, type KeyObject, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import {
  AEAD_AES_256_GCM,
  buildRequestMessage,
  decodeStrictBase64,
  encryptAeadAes256Gcm,
  formatChinaTime,
  parseAuthorization,
  randomNonce,
  signV3Headers,
} from "@wpn/wechatpay";
import { findRefund, type OrderState, orderKey, orderStates, type RefundEntry, readJournal } from "./journal.ts";
import type { SimKeys } from "./keys.ts";
import { signerKey } from "./notifications.ts";

/**
 * A fake WeChat Pay merchant API for the calls a notification processor makes:
 * - GET /v3/certificates — the platform certificate, encrypted as WeChat does (AEAD_AES_256_GCM, APIv3 key,
 *   associated_data "certificate"), response signed with the certificate's key;
 * - GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid= and …/id/{transaction_id}?mchid= — order query;
 * - GET /v3/refund/domestic/refunds/{out_refund_no} — refund query.
 * Data comes from the journal of the keys folder, re-read on every request (so it follows what pay,
 * refund, close and load send meanwhile). Every response carries Wechatpay-Timestamp/Nonce/Serial/Signature.
 *
 * Requests must carry a well-formed `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",…` for the
 * simulated merchant; its signature is verified only when the merchant's API public key is given.
 */

export interface FakeApiOptions {
  keys: SimKeys;
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** The merchant API certificate's public key; when set, request signatures are verified. */
  merchantPublicKey?: KeyObject;
  /** One line per request. */
  log?: (line: string) => void;
}

export interface FakeApi {
  url: string;
  close(): Promise<void>;
}

interface Reply {
  status: number;
  body: unknown;
}

function error(status: number, code: string, message: string): Reply {
  return { status, body: { code, message } };
}

/** The merchant API's view of an order (GET /v3/pay/transactions/…). */
export function transactionView(order: OrderState): Record<string, unknown> {
  const desc: Record<OrderState["tradeState"], string> = {
    SUCCESS: "支付成功",
    REFUND: "转入退款",
    NOTPAY: "未支付",
    CLOSED: "订单已关闭",
  };
  const view: Record<string, unknown> = {
    appid: order.appid,
    mchid: order.mchid,
    out_trade_no: order.outTradeNo,
  };
  if (order.transactionId !== undefined && order.tradeState !== "NOTPAY" && order.tradeState !== "CLOSED") {
    view.transaction_id = order.transactionId;
    view.trade_type = "JSAPI";
  }
  view.trade_state = order.tradeState;
  view.trade_state_desc = desc[order.tradeState];
  if (order.tradeState === "SUCCESS" || order.tradeState === "REFUND") {
    view.bank_type = "OTHERS";
    view.attach = "";
    if (order.successTime) view.success_time = formatChinaTime(new Date(order.successTime));
    view.payer = { openid: order.openid ?? "" };
    view.amount = { total: order.amount, payer_total: order.amount, currency: "CNY", payer_currency: "CNY" };
  } else {
    view.amount = { total: order.amount, currency: "CNY" };
  }
  return view;
}

/** The merchant API's view of a refund (GET /v3/refund/domestic/refunds/{out_refund_no}); `status`, not `refund_status`. */
export function refundView(r: RefundEntry): Record<string, unknown> {
  const view: Record<string, unknown> = {
    refund_id: r.refundId,
    out_refund_no: r.outRefundNo,
    transaction_id: r.transactionId,
    out_trade_no: r.outTradeNo,
    channel: "ORIGINAL",
    user_received_account: "支付用户零钱",
  };
  if (r.status === "SUCCESS") view.success_time = formatChinaTime(new Date(r.successTime));
  view.create_time = formatChinaTime(new Date(r.at));
  view.status = r.status;
  view.funds_account = "AVAILABLE";
  view.amount = {
    total: r.total,
    refund: r.refund,
    payer_total: r.total,
    payer_refund: r.refund,
    settlement_total: r.total,
    settlement_refund: r.refund,
    discount_refund: 0,
    currency: "CNY",
  };
  return view;
}

/** `GET /v3/certificates` body: the platform certificate encrypted with the APIv3 key (AAD "certificate"). */
export function certificatesView(keys: SimKeys): Record<string, unknown> {
  const nonce = randomNonce(12);
  return {
    data: [
      {
        serial_no: keys.certificateSerial,
        effective_time: formatChinaTime(keys.certificateNotBefore),
        expire_time: formatChinaTime(keys.certificateNotAfter),
        encrypt_certificate: {
          algorithm: AEAD_AES_256_GCM,
          nonce,
          associated_data: "certificate",
          ciphertext: encryptAeadAes256Gcm({
            key: Buffer.from(keys.apiV3Key, "utf8"),
            nonce,
            associatedData: "certificate",
            plaintext: keys.certificatePem,
          }),
        },
      },
    ],
  };
}

function authorize(req: http.IncomingMessage, opts: FakeApiOptions): Reply | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return error(401, "SIGN_ERROR", "缺少Authorization请求头 (Authorization header missing)");
  let auth: ReturnType<typeof parseAuthorization>;
  try {
    auth = parseAuthorization(header);
  } catch (err) {
    return error(401, "SIGN_ERROR", `Authorization无效: ${(err as Error).message}`);
  }
  if (auth.mchid !== opts.keys.mchid) {
    return error(401, "SIGN_ERROR", `mchid ${auth.mchid} is not the simulated merchant ${opts.keys.mchid}`);
  }
  if (opts.merchantPublicKey) {
    const skew = Math.abs(Date.now() / 1000 - Number(auth.timestamp));
    if (!Number.isFinite(skew) || skew > 300) return error(401, "SIGN_ERROR", "timestamp outside 5 minutes");
    const message = buildRequestMessage(req.method ?? "GET", req.url ?? "/", auth.timestamp, auth.nonce_str, "");
    const signature = decodeStrictBase64(auth.signature);
    let ok = false;
    try {
      ok = signature !== undefined && cryptoVerify("sha256", message, opts.merchantPublicKey, signature);
    } catch {
      ok = false;
    }
    if (!ok) return error(401, "SIGN_ERROR", "签名错误 (signature does not verify with the merchant public key)");
  }
  return undefined;
}

/** A path segment decoded, or undefined when it is not valid percent-encoding (a bare `%`): the caller's mistake. */
function pathParam(raw: string | undefined): string | undefined {
  try {
    return decodeURIComponent(raw ?? "");
  } catch {
    return undefined;
  }
}

const BAD_PATH_PARAM = error(400, "PARAM_ERROR", "参数格式错误 (the path segment is not valid percent-encoding)");

function route(req: http.IncomingMessage, opts: FakeApiOptions): Reply {
  const url = new URL(req.url ?? "/", "http://fake");
  if (req.method !== "GET") return error(405, "METHOD_NOT_ALLOWED", `${req.method} is not supported by the simulator`);
  const denied = authorize(req, opts);
  if (denied) return denied;
  const { keys } = opts;
  if (url.pathname === "/v3/certificates") return { status: 200, body: certificatesView(keys) };

  const byOutTradeNo = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)$/.exec(url.pathname);
  const byId = /^\/v3\/pay\/transactions\/id\/([^/]+)$/.exec(url.pathname);
  if (byOutTradeNo || byId) {
    const mchid = url.searchParams.get("mchid");
    if (!mchid) return error(400, "PARAM_ERROR", "缺少参数mchid (query parameter mchid is required)");
    const wanted = pathParam((byOutTradeNo ?? byId)?.[1]);
    if (wanted === undefined) return BAD_PATH_PARAM;
    const orders = orderStates(readJournal(keys.dir));
    const order = byOutTradeNo
      ? orders.get(orderKey(mchid, wanted))
      : [...orders.values()].find((o) => o.mchid === mchid && o.transactionId === wanted && o.tradeState !== "NOTPAY");
    if (!order) return error(404, "ORDER_NOT_EXIST", "订单不存在");
    return { status: 200, body: transactionView(order) };
  }
  const refund = /^\/v3\/refund\/domestic\/refunds\/([^/]+)$/.exec(url.pathname);
  if (refund) {
    const outRefundNo = pathParam(refund[1]);
    if (outRefundNo === undefined) return BAD_PATH_PARAM;
    const entry = findRefund(keys.dir, keys.mchid, outRefundNo);
    if (!entry) return error(404, "RESOURCE_NOT_EXISTS", "退款单不存在");
    return { status: 200, body: refundView(entry) };
  }
  return error(404, "NOT_FOUND", `${url.pathname} is not simulated (see wechatpay-sim serve --help)`);
}

/**
 * Which key signs a response: the public key when the request asked for it (`Wechatpay-Serial: PUB_KEY_ID_…`,
 * as WeChat does for merchants in public-key mode), otherwise the platform certificate. The certificate
 * download is always certificate-signed, so clients can check it with the downloaded set.
 */
function responseSigner(req: http.IncomingMessage, keys: SimKeys, path: string) {
  const wanted = req.headers["wechatpay-serial"];
  if (path !== "/v3/certificates" && wanted === keys.publicKeyId) return signerKey(keys, "public-key");
  return signerKey(keys, "certificate");
}

export function startFakeApi(opts: FakeApiOptions): Promise<FakeApi> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      let reply: Reply;
      try {
        reply = route(req, opts);
      } catch (err) {
        reply = error(500, "SYSTEM_ERROR", `simulator error: ${(err as Error).message}`);
      }
      const body = Buffer.from(JSON.stringify(reply.body), "utf8");
      const path = new URL(req.url ?? "/", "http://fake").pathname;
      const { privateKey, serial } = responseSigner(req, opts.keys, path);
      const headers = signV3Headers(body, { privateKey, serial });
      res.writeHead(reply.status, {
        ...headers,
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": String(body.length),
        "Request-ID": randomUUID(),
      });
      res.end(body);
      opts.log?.(`${new Date().toISOString()} ${req.method} ${req.url} → ${reply.status}`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      const address = server.address() as AddressInfo;
      const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
      resolve({
        url: `http://${host}:${address.port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
