import { isUtf8 } from "node:buffer";
import type { IncomingHttpHeaders } from "node:http";
import { type ParseJobV3, V3_ENVELOPE_ID, v3NotificationId } from "@wpn/queue";
import {
  type CertificateRefresher,
  isPublicKeyId,
  isWechatPayError,
  type RawHeaders,
  readV3Headers,
  type V3Headers,
  verifyV3,
} from "@wpn/wechatpay";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { IngressError } from "../errors.ts";
import type { MerchantKeys } from "../merchants/registry.ts";
import { TIMED_OUT, within } from "../within.ts";
import { ANSWER_BUDGET_MS, budgetLeftMs } from "./budget.ts";
import type { MerchantParams, NotifyContext } from "./context.ts";
import { lookupMerchant } from "./merchant.ts";
import { registerNotifyRoutes } from "./register.ts";

/**
 * Longest wait of a request for a certificate download it triggered, ms (the download goes on, for the resends).
 * It gets what the answer budget leaves after the enqueue's own bound: 2 s with the default 2 s bound, nothing with
 * a 4.5 s one (then an unknown serial answers 503 at once).
 */
const MAX_DOWNLOAD_WAIT_MS = 2_000;

/** Thrown by the key-less resolver below: the cheap checks passed and only the key is missing. */
class KeyNeeded extends Error {}
const NO_KEYS = {
  resolve(): never {
    throw new KeyNeeded();
  },
};

/**
 * APIv3 routes: `POST /notify/v3` (default merchant) and `POST /notify/v3/:mchid`.
 * Order of checks (cheapest first, nothing touches Redis until the signature verified):
 *   content type / body size (Fastify, 415/413) → headers (400) → merchant → probe, timestamp, signature type,
 *   serial, RSA signature (401; an unknown certificate serial first triggers a certificate download where one is
 *   configured, 503 if it fails; an unknown public-key id never does) → envelope id (400) → enqueue (503 on failure or timeout) → 204.
 * The notification id — job id, receipt key, Notification row — is `v3:<mchid>:<envelope id>` (@wpn/queue
 * jobs/ids.ts), the merchant being the one whose keys verified it: tenants supply their own key material, so a
 * signature proves only whose notification it is, and the envelope id it carries is an outside value — one that
 * must neither name one of the queue's own Redis keys (`wait`, `meta`, …) nor take another merchant's id and
 * have that merchant's genuine notification answered as a redelivery.
 * The merchant is the default one or one in memory; for an mchid that is not, `resolveMerchant` runs the key-less
 * checks (probe, timestamp, signature type: 401) before the merchant-table lookup that may answer 404 (or 503 while
 * the table cannot be read).
 */
export async function notifyV3Routes(app: FastifyInstance, ctx: NotifyContext): Promise<void> {
  registerNotifyRoutes(app, ctx, "v3", "application/json", handleV3);
}

async function handleV3(
  ctx: NotifyContext,
  request: FastifyRequest<{ Params: MerchantParams }>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const receivedAt = ctx.clock();
  const body = request.body;
  // No Content-Type at all: Fastify skips parsing and leaves no body.
  if (!Buffer.isBuffer(body)) throw new IngressError("UNSUPPORTED_MEDIA_TYPE", "request has no JSON body");
  const headers = readV3Headers(signatureHeaders(request.headers, request.raw.rawHeaders));
  const now = new Date(receivedAt);
  const toleranceSeconds = ctx.settings.timestampToleranceSeconds;
  const merchant = await resolveMerchant(ctx, request.params.mchid, headers, body, now);
  // A public-key id the merchant does not hold is refused below (401 SERIAL_UNKNOWN, or PUBLIC_KEY_NOT_CONFIGURED when it
  // holds none at all): no download can bring one.
  if (
    merchant.certificateRefresher !== undefined &&
    !merchant.keys.has(headers.serial) &&
    !isPublicKeyId(headers.serial)
  ) {
    await downloadForUnknownSerial(ctx, merchant.certificateRefresher, headers, body, now, reply);
  }
  try {
    const verifying = ctx.verifyV3(headers, body, { keys: merchant.keys, now, toleranceSeconds });
    // Awaited only when it runs elsewhere: an await of the event-loop check would cost a microtask per request.
    if (verifying) await verifying;
  } catch (error) {
    throw withPublicKeyAdvice(error, merchant);
  }

  const text = readUtf8(body);
  const envelope = readEnvelopeId(text);
  const id = v3NotificationId(merchant.mchid, envelope.id);
  // Built field by field (typed as the contract's ParseJobV3); the only constraint TypeScript cannot check,
  // the id's form, is enforced by readEnvelopeId and, its length (NOTIFICATION_ID_MAX_LENGTH), by the intake. No zod
  // pass on the hot path (measured ~10 µs per request).
  const job: ParseJobV3 = {
    v: 1,
    api: "v3",
    id,
    mchid: merchant.mchid,
    receivedAt,
    headers: {
      timestamp: headers.timestamp,
      nonce: headers.nonce,
      serial: headers.serial,
      signatureType: headers.signatureType,
      ...(headers.requestId === undefined ? {} : { requestId: headers.requestId }),
    },
    body: text,
  };
  const outcome = await ctx.intake.accept("v3", id, job, budgetLeftMs(reply));
  request.ingressCode = outcome.kind === "enqueued" ? "OK" : "DUPLICATE";
  request.log.debug(
    { id, eventType: envelope.eventType, mchid: merchant.mchid, outcome: request.ingressCode },
    "notification accepted",
  );
  return reply.code(204).send();
}

/**
 * The default merchant, or the route's merchant. Before an unknown mchid may cost a (rate-limited)
 * merchant-table reload, the request must pass every check that needs no key (probe, timestamp, signature
 * type) — so replayed or junk requests never reach PostgreSQL.
 */
async function resolveMerchant(
  ctx: NotifyContext,
  mchid: string | undefined,
  headers: V3Headers,
  body: Buffer,
  now: Date,
): Promise<MerchantKeys> {
  if (mchid === undefined) return ctx.merchants.defaultMerchant;
  const known = ctx.merchants.get(mchid);
  if (known) return known;
  checkAllButKey(ctx, headers, body, now);
  return lookupMerchant(ctx.merchants, mchid);
}

/**
 * A notification signed with the WeChat Pay public key for a merchant that has none (PUBLIC_KEY_NOT_CONFIGURED:
 * WeChat is moving it from platform certificates to its public key) is refused with what the operator must set, in
 * the log line's `detail` (the id itself is its `serial`); WeChat resends for 24 h, so configuring the key then saves
 * the notifications. Any other error as it is.
 */
function withPublicKeyAdvice(error: unknown, merchant: MerchantKeys): unknown {
  if (!isWechatPayError(error) || error.code !== "PUBLIC_KEY_NOT_CONFIGURED") return error;
  const settings =
    merchant.source === "env"
      ? "WECHATPAY_PUBLIC_KEY_ID and WECHATPAY_PUBLIC_KEY_PATH"
      : "the Merchant row's publicKeyId and publicKeyPem";
  return new IngressError(
    "PUBLIC_KEY_NOT_CONFIGURED",
    `WeChat signs with its public key (id in serial), this merchant has none: set ${settings} from the merchant platform`,
    { cause: error },
  );
}

/**
 * WeChat's "lazy" certificate update: a notification signed with a certificate we do not know yet (a rotation)
 * makes the merchant's refresher download the current list, once the request passed every check that needs no
 * key. The refresher's throttle (one download per minute) bounds what forged serials can cost; requests that
 * arrive during a download share it. A failed download (or, within the throttle, the last one failed), or one still
 * running after the wait the answer budget leaves, answers 503 CERT_DOWNLOAD_FAILED (WeChat resends); a serial
 * still unknown afterwards is refused by the verification that follows (401 SERIAL_UNKNOWN).
 */
async function downloadForUnknownSerial(
  ctx: NotifyContext,
  refresher: CertificateRefresher,
  headers: V3Headers,
  body: Buffer,
  now: Date,
  reply: FastifyReply,
): Promise<void> {
  checkAllButKey(ctx, headers, body, now);
  const left = ANSWER_BUDGET_MS - reply.elapsedTime;
  // Whole ms: reply.elapsedTime is fractional, and the wait is quoted in the log line below.
  const waitMs = Math.max(0, Math.floor(Math.min(MAX_DOWNLOAD_WAIT_MS, left - ctx.settings.enqueueTimeoutMs)));
  const outcome = await within(refresher.refresh(), waitMs);
  if (outcome === TIMED_OUT) {
    throw new IngressError("CERT_DOWNLOAD_FAILED", `certificate download still running after ${waitMs} ms`);
  }
  // Throttled right after a failed download: WeChat's API is the problem, not the sender (503, not 401).
  if (!outcome && refresher.lastDownloadFailed) {
    throw new IngressError("CERT_DOWNLOAD_FAILED", "the last certificate download failed; next one within a minute");
  }
}

/** Probe, timestamp and signature-type checks of `verifyV3` — everything it does before it needs a key. */
function checkAllButKey(ctx: NotifyContext, headers: V3Headers, body: Buffer, now: Date): void {
  try {
    verifyV3(headers, body, { keys: NO_KEYS, now, toleranceSeconds: ctx.settings.timestampToleranceSeconds });
  } catch (error) {
    if (!(error instanceof KeyNeeded)) throw error;
  }
}

/** The headers `readV3Headers` looks at, lower-case (as Node names them). */
const SIGNATURE_HEADERS = [
  "wechatpay-timestamp",
  "wechatpay-nonce",
  "wechatpay-signature",
  "wechatpay-serial",
  "wechatpay-signature-type",
  "request-id",
] as const;

/**
 * Only the headers `readV3Headers` looks at. Node has already lower-cased the names; handing over these six
 * instead of the whole request's headers makes its case-insensitive scan ~3× cheaper (measured), which counts
 * at thousands of requests per second.
 * Node joins the lines of a header sent twice into one value, "a, b", which no value of these holds otherwise
 * (digits, letters, base64, `-`, `_`): then they are taken line by line from the raw headers, so that
 * `readV3Headers` reads one value sent twice as that value and refuses two different ones (HEADER_INVALID: which was
 * signed?) — instead of a 401 for a signature "a, a", and a certificate download for a serial "a, a".
 */
function signatureHeaders(all: IncomingHttpHeaders, rawHeaders: readonly string[]): RawHeaders {
  const picked: RawHeaders = {
    "wechatpay-timestamp": all["wechatpay-timestamp"],
    "wechatpay-nonce": all["wechatpay-nonce"],
    "wechatpay-signature": all["wechatpay-signature"],
    "wechatpay-serial": all["wechatpay-serial"],
    "wechatpay-signature-type": all["wechatpay-signature-type"],
    "request-id": all["request-id"],
  };
  for (const name of SIGNATURE_HEADERS) if (picked[name]?.includes(",")) return headerLines(rawHeaders);
  return picked;
}

/** The signature headers' lines of `rawHeaders` (Node's `[name, value, name, value, …]`), one value per line. */
function headerLines(rawHeaders: readonly string[]): RawHeaders {
  const lines: Record<string, string[]> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (!(SIGNATURE_HEADERS as readonly string[]).includes(name)) continue;
    const value = rawHeaders[i + 1] as string;
    const list = lines[name];
    if (list) list.push(value);
    else lines[name] = [value];
  }
  return lines;
}

function readUtf8(body: Buffer): string {
  if (!isUtf8(body)) throw new IngressError("ENVELOPE_INVALID", "body is not UTF-8");
  return body.toString("utf8");
}

/**
 * Only `id` and `event_type` are read from the (verified) envelope; the encrypted `resource` is left for the
 * worker, so Redis never holds payer data in clear text. The id must be what WeChat sends (V3_ENVELOPE_ID: 1–64
 * ASCII letters, digits, '-', '_'): it becomes part of Redis keys and of the notification id.
 */
function readEnvelopeId(text: string): { id: string; eventType: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new IngressError("ENVELOPE_INVALID", "body is not JSON");
  }
  const { id, event_type: eventType } = (parsed ?? {}) as { id?: unknown; event_type?: unknown };
  if (typeof id !== "string" || !V3_ENVELOPE_ID.test(id)) {
    throw new IngressError("ENVELOPE_INVALID", "envelope id is missing or not 1-64 ASCII letters, digits, '-', '_'");
  }
  if (typeof eventType !== "string" || eventType.length === 0) {
    throw new IngressError("ENVELOPE_INVALID", "envelope event_type is missing");
  }
  return { id, eventType };
}
