import { DEFAULT_PORT } from "@wpn/config";
import type { V2SignType } from "@wpn/wechatpay";
import {
  amountFlag,
  boolFlag,
  enumFlag,
  intFlag,
  mchidFlag,
  numberFlag,
  type OptionSpec,
  stringFlag,
  tradeNoFlag,
  urlFlag,
  type Values,
} from "../args.ts";
import {
  ANSWER_TIMEOUT_MS,
  type Attempt,
  type DeliveryResult,
  deliver,
  formatMs,
  formatSeconds,
  retryDelays,
} from "../deliver.ts";
import { EXIT, type Io, println, UsageError } from "../io.ts";
import type { SimKeys } from "../keys.ts";
import { type Api, type Notification, SIGNERS, type Signer, V2_SIGN_TYPES } from "../notifications.ts";

/**
 * Where notifications go by default: the ingress of `npm start` on this machine, on the PORT it listens on (the
 * environment over `.env`, as the apps read it; unset or empty: 3000). Only this URL or the one given is contacted.
 * A PORT that names no port to connect to (0 is "any free port" for the ingress) is a usage error: give --url.
 */
export function defaultNotifyUrl(api: Api, env: Io["env"]): string {
  const port = env.PORT;
  if (port === undefined || port === "") return `http://127.0.0.1:${DEFAULT_PORT}/notify/${api}`;
  const number = /^[0-9]{1,5}$/.test(port) ? Number(port) : 0;
  if (number < 1 || number > 65_535) {
    throw new UsageError(
      `PORT (environment or .env) must be a port number 1-65535, got "${port}"; or give --url`,
      "--url",
    );
  }
  return `http://127.0.0.1:${number}/notify/${api}`;
}

/** --url, else the default notify URL for `api` (PORT is not looked at when --url is given). */
export function notifyUrl(values: Values, io: Io, api: Api): URL {
  return urlFlag(values, "url", () => defaultNotifyUrl(api, io.env));
}

export const SEND_OPTIONS: OptionSpec = {
  url: { type: "string" },
  keys: { type: "string" },
  v2: { type: "boolean" },
  "sign-type": { type: "string" },
  signer: { type: "string" },
  "no-retry": { type: "boolean" },
  "time-scale": { type: "string" },
  "timeout-ms": { type: "string" },
  json: { type: "boolean" },
  mchid: { type: "string" },
  appid: { type: "string" },
  "out-trade-no": { type: "string" },
  amount: { type: "string" },
  "transaction-id": { type: "string" },
};

export const SEND_HELP = `Delivery options:
  --url URL              notify URL (default http://127.0.0.1:$PORT/notify/v3, with --v2 …/notify/v2;
                         PORT from the environment or .env, else ${DEFAULT_PORT})
  --keys DIR             keys folder from \`wechatpay-sim keys\` (default $WECHATPAY_SIM_KEYS or .dev/keys)
  --v2                   send an APIv2 XML notification instead of APIv3 JSON
  --sign-type TYPE       v2 payment signature: MD5 (default; no sign_type field) or HMAC-SHA256
  --signer WHO           v3 signing key: public-key (default, serial PUB_KEY_ID_…) or certificate
  --no-retry             one delivery only, no redelivery schedule
  --time-scale F         multiply the redelivery waits by F (e.g. 0.001: 15 s → 15 ms; default 1)
  --timeout-ms MS        how long to wait for an answer (default ${ANSWER_TIMEOUT_MS}, WeChat's limit)
  --json                 print one JSON result on stdout instead of the transcript
  --mchid ID, --appid ID override the merchant from the keys folder (e.g. to see a notification naming another
                         merchant refused: 400 for APIv2, dead-lettered PAYLOAD_INVALID for APIv3)
  --transaction-id ID    WeChat's transaction id (default: from the journal, else a new 28-digit id)`;

export interface SendSettings {
  url: URL;
  api: Api;
  signType: V2SignType;
  signer: Signer;
  retry: boolean;
  timeScale: number;
  timeoutMs: number;
  json: boolean;
}

/**
 * --signer picks the key of an APIv3 signature; APIv2 notifications are signed with the APIv2 key, so with --v2 it
 * would change nothing and is refused, as --sign-type without --v2 is.
 */
export function signerFlag(values: Values, api: Api): Signer {
  const signer = enumFlag(values, "signer", SIGNERS) ?? "public-key";
  if (values.signer !== undefined && api === "v2") {
    throw new UsageError(
      "--signer picks the APIv3 signing key: APIv2 notifications are signed with the APIv2 key (--sign-type)",
      "--signer",
    );
  }
  return signer;
}

export function sendSettings(values: Values, io: Io): SendSettings {
  const api: Api = boolFlag(values, "v2") ? "v2" : "v3";
  const signType = enumFlag(values, "sign-type", V2_SIGN_TYPES) ?? "MD5";
  if (values["sign-type"] !== undefined && api !== "v2") {
    throw new UsageError("--sign-type applies to APIv2 notifications only: add --v2", "--sign-type");
  }
  const retry = !boolFlag(values, "no-retry");
  if (!retry && values["time-scale"] !== undefined) {
    throw new UsageError("--time-scale scales the redelivery schedule, which --no-retry turns off", "--time-scale");
  }
  return {
    url: notifyUrl(values, io, api),
    api,
    signType,
    signer: signerFlag(values, api),
    retry,
    timeScale: numberFlag(values, "time-scale", { min: 0, max: 1000, minExclusive: true, what: "a factor" }) ?? 1,
    timeoutMs: intFlag(values, "timeout-ms", { min: 1, max: 600_000, what: "milliseconds" }) ?? ANSWER_TIMEOUT_MS,
    json: boolFlag(values, "json"),
  };
}

/**
 * Checks the order flags that need no keys folder, so a wrong flag is reported as such even when the keys
 * are missing too. The commands read them again (with their defaults) afterwards.
 */
export function checkOrderFlags(values: Values): void {
  mchidFlag(values);
  stringFlag(values, "appid");
  stringFlag(values, "transaction-id");
  tradeNoFlag(values, "out-trade-no");
  amountFlag(values);
}

export function merchant(values: Values, keys: SimKeys): { mchid: string; appid: string } {
  return { mchid: mchidFlag(values) ?? keys.mchid, appid: stringFlag(values, "appid") ?? keys.appid };
}

const HEADER_ORDER = [
  "Content-Type",
  "Wechatpay-Timestamp",
  "Wechatpay-Nonce",
  "Wechatpay-Serial",
  "Wechatpay-Signature",
  "Wechatpay-Signature-Type",
];

function printRequest(
  io: Io,
  settings: SendSettings,
  notification: Notification,
  attempt: Attempt,
  total: number,
): void {
  const out = io.stdout;
  println(
    out,
    `→ POST ${settings.url.toString()}  (delivery ${attempt.number} of ${total}, ${attempt.at.toISOString()})`,
  );
  const headers = attempt.request.headers;
  for (const name of [...HEADER_ORDER, ...Object.keys(headers).filter((h) => !HEADER_ORDER.includes(h))]) {
    const value = headers[name];
    if (value !== undefined) println(out, `  ${name}: ${value}`);
  }
  if (attempt.number === 1) {
    println(out, "");
    println(out, `  ${attempt.request.body.toString("utf8")}`);
    const what =
      notification.api === "v3"
        ? "resource, decrypted"
        : notification.id.startsWith("v2:refund")
          ? "req_info, decrypted"
          : "fields";
    println(out, `  (${what}: ${JSON.stringify(notification.plaintext)})`);
  } else {
    println(out, `  (same body as delivery 1: notification ${notification.id}, re-signed now)`);
  }
}

function printAnswer(io: Io, attempt: Attempt): void {
  const out = io.stdout;
  const o = attempt.outcome;
  if (o.kind === "answer") {
    println(out, `← HTTP ${o.status} in ${formatMs(o.latencyMs)}`);
    if (o.body !== "") println(out, `  ${o.body.length > 500 ? `${o.body.slice(0, 500)}…` : o.body}`);
  } else if (o.kind === "timeout") {
    println(out, `← no answer within ${formatMs(o.timeoutMs)}`);
  } else {
    println(out, `← ${o.code}: ${o.message}`);
  }
  const v = attempt.verdict;
  println(
    out,
    `${v.acknowledged ? "✓" : "✗"} WeChat's verdict: ${v.acknowledged ? "acknowledged" : "NOT acknowledged"} — ${v.reason}`,
  );
  if (v.warning) println(out, `! ${v.warning}`);
  println(out, "");
}

export interface Sent {
  result: DeliveryResult;
  exitCode: number;
  json: Record<string, unknown>;
}

/**
 * Delivers `notification` with WeChat's schedule and prints the transcript (or, with --json, collects it).
 * Exit code: 0 acknowledged, 1 never acknowledged, 3 when the last failure was a connection error, 130 interrupted.
 */
export async function deliverAndReport(io: Io, settings: SendSettings, notification: Notification): Promise<Sent> {
  const total = settings.retry ? retryDelays(notification.api).length + 1 : 1;
  const result = await deliver({
    url: settings.url,
    notification,
    retry: settings.retry,
    timeScale: settings.timeScale,
    timeoutMs: settings.timeoutMs,
    signal: io.signal,
    onAttempt: (attempt) => {
      if (settings.json) return;
      printRequest(io, settings, notification, attempt, total);
      printAnswer(io, attempt);
    },
    onWait: ({ nextAttempt, totalAttempts, scheduledSeconds, waitMs }) => {
      if (settings.json) return;
      const scaled = settings.timeScale === 1 ? "" : ` (×${settings.timeScale}: ${formatMs(waitMs)})`;
      println(
        io.stdout,
        `… redelivery ${nextAttempt} of ${totalAttempts} in ${formatSeconds(scheduledSeconds)}${scaled}`,
      );
      println(io.stdout, "");
    },
  });
  const last = result.attempts.at(-1);
  let exitCode: number = EXIT.OK;
  let summary: string;
  if (result.acknowledged) {
    summary = `acknowledged at delivery ${result.attempts.length}`;
  } else if (result.interrupted) {
    exitCode = EXIT.INTERRUPTED;
    summary = `interrupted after ${result.attempts.length} deliveries, not acknowledged`;
  } else {
    exitCode = last?.verdict.network ? EXIT.NETWORK : EXIT.WRONG_ANSWER;
    if (!settings.retry) {
      const next = retryDelays(notification.api)[0] ?? 15;
      summary = `not acknowledged (--no-retry; WeChat would redeliver in ${formatSeconds(next)})`;
    } else {
      summary =
        `not acknowledged after ${result.attempts.length} deliveries: WeChat stops here ` +
        "and the merchant has to query the order to learn about it";
    }
  }
  const json = {
    api: notification.api,
    url: settings.url.toString(),
    notificationId: notification.id,
    eventType: notification.eventType,
    acknowledged: result.acknowledged,
    interrupted: result.interrupted,
    summary,
    deliveries: result.attempts.map((a) => ({
      number: a.number,
      at: a.at.toISOString(),
      headers: a.request.headers,
      body: a.number === 1 ? a.request.body.toString("utf8") : undefined,
      answer:
        a.outcome.kind === "answer"
          ? { status: a.outcome.status, body: a.outcome.body, latencyMs: a.outcome.latencyMs }
          : a.outcome.kind === "timeout"
            ? { timeout: true, latencyMs: a.outcome.latencyMs }
            : { error: a.outcome.code, message: a.outcome.message },
      acknowledged: a.verdict.acknowledged,
      verdict: a.verdict.reason,
      warning: a.verdict.warning,
    })),
    plaintext: notification.plaintext,
    exitCode,
  };
  if (!settings.json) println(io.stdout, `${result.acknowledged ? "✓" : "✗"} ${summary}`);
  return { result, exitCode, json };
}
