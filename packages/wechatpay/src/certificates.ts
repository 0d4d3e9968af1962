import type { KeyObject } from "node:crypto";
import { z } from "zod";
import { AEAD_AES_256_GCM, decryptAeadAes256Gcm } from "./aead.ts";
import { isWechatPayError, openWithKeyOrPrevious, WechatPayError } from "./errors.ts";
import { readV3Headers } from "./headers.ts";
import { describeIssues, parseJsonBytes } from "./json.ts";
import {
  type AsyncKeyResolver,
  certificateExpired,
  isPublicKeyId,
  type KeyResolver,
  KeyStore,
  sameCertificateSerial,
} from "./key-store.ts";
import { type LoadedCertificate, loadCertificate, narrowValidity } from "./keys.ts";
import { buildRequestMessage } from "./message.ts";
import { randomNonce, signV3Message, unixSeconds } from "./sign.ts";
import { verifyV3 } from "./verify.ts";

/** Production API host; tests and the simulator pass their own base URL. */
export const WECHATPAY_API_BASE_URL = "https://api.mch.weixin.qq.com";
export const CERTIFICATES_PATH = "/v3/certificates";
/** Authorization scheme of RSA merchants; the same string as the notification signature type. */
export const AUTHORIZATION_SCHEME = "WECHATPAY2-SHA256-RSA2048";
/** WeChat Pay rejects API calls without a User-Agent. */
export const USER_AGENT = "wpn-wechatpay/0.1 (+node)";
/** Default time limit for one certificate download, in milliseconds. */
export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 10_000;

// A value inside `key="value"` must not be able to close the quote or start a new header line.
const HEADER_SAFE = /^[^"\\\r\n]+$/;

/**
 * The `Authorization` header of a merchant API request:
 * `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"`, where the
 * signature covers `METHOD\nURL_PATH_WITH_QUERY\nTIMESTAMP\nNONCE\nBODY\n` (body "" for GET).
 * `serialNo` is the serial of the *merchant* API certificate, `privateKey` its private key.
 */
export function buildAuthorization(args: {
  mchid: string;
  serialNo: string;
  privateKey: KeyObject;
  method: string;
  urlPath: string;
  body?: string;
  now?: Date;
  nonce?: string;
}): string {
  const method = args.method.toUpperCase();
  const timestamp = unixSeconds(args.now ?? new Date());
  const nonce = args.nonce ?? randomNonce(32);
  for (const [name, value] of Object.entries({ mchid: args.mchid, serial_no: args.serialNo, nonce_str: nonce })) {
    if (!HEADER_SAFE.test(value))
      throw new RangeError(`${name} must be non-empty and contain no quote, backslash or newline`);
  }
  if (!args.urlPath.startsWith("/")) throw new RangeError(`urlPath must start with "/", got "${args.urlPath}"`);
  const signature = signV3Message(
    buildRequestMessage(method, args.urlPath, timestamp, nonce, args.body ?? ""),
    args.privateKey,
  );
  return (
    `${AUTHORIZATION_SCHEME} mchid="${args.mchid}",nonce_str="${nonce}",timestamp="${timestamp}",` +
    `serial_no="${args.serialNo}",signature="${signature}"`
  );
}

export interface ParsedAuthorization {
  mchid: string;
  nonce_str: string;
  timestamp: string;
  serial_no: string;
  signature: string;
}

/** The reverse of `buildAuthorization`, for fake WeChat servers (tests, simulator). Throws HEADER_INVALID. */
export function parseAuthorization(header: string): ParsedAuthorization {
  const prefix = `${AUTHORIZATION_SCHEME} `;
  if (!header.startsWith(prefix)) {
    throw new WechatPayError("HEADER_INVALID", `Authorization does not start with "${AUTHORIZATION_SCHEME}"`);
  }
  const fields = new Map<string, string>();
  for (const part of header.slice(prefix.length).split(",")) {
    const match = /^\s*([a-z_]+)="([^"]*)"\s*$/.exec(part);
    if (!match?.[1] || match[2] === undefined || fields.has(match[1])) {
      throw new WechatPayError("HEADER_INVALID", `Authorization has a malformed or repeated field: ${part}`);
    }
    fields.set(match[1], match[2]);
  }
  const get = (name: keyof ParsedAuthorization): string => {
    const value = fields.get(name);
    if (!value) throw new WechatPayError("HEADER_INVALID", `Authorization lacks ${name}`);
    return value;
  };
  return {
    mchid: get("mchid"),
    nonce_str: get("nonce_str"),
    timestamp: get("timestamp"),
    serial_no: get("serial_no"),
    signature: get("signature"),
  };
}

const certificatesResponseSchema = z.looseObject({
  data: z.array(
    z.looseObject({
      serial_no: z.string().min(1),
      effective_time: z.string().optional(),
      expire_time: z.string().optional(),
      encrypt_certificate: z.looseObject({
        algorithm: z.string(),
        nonce: z.string(),
        associated_data: z.string().optional(),
        ciphertext: z.string(),
      }),
    }),
  ),
});

/** An RFC 3339 time as WeChat writes `effective_time` and `expire_time`: `2018-06-08T10:34:56+08:00`. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})$/;

/** A listed time, or ENVELOPE_INVALID: a retirement we cannot read must not be ignored. */
function listedTime(value: string | undefined, field: string): Date | undefined {
  if (value === undefined) return undefined;
  const date = RFC3339.test(value) ? new Date(value) : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) {
    throw new WechatPayError("ENVELOPE_INVALID", `certificates response: ${field} "${value}" is not an RFC 3339 time`);
  }
  return date;
}

/**
 * `cert` valid only while WeChat's listing says so too: from `effective_time` (启用时间, fixed per certificate) to
 * `expire_time` (弃用时间), which WeChat moves forward 24 h before it switches to a new certificate — the key retires
 * then, possibly years before the certificate's own notAfter. Only ever narrowed: a listing wider than the
 * certificate does not extend it. A field WeChat leaves out leaves that bound as the certificate has it.
 */
function withinListing(
  cert: LoadedCertificate,
  entry: { effective_time?: string | undefined; expire_time?: string | undefined },
): LoadedCertificate {
  const notBefore = listedTime(entry.effective_time, "effective_time");
  const notAfter = listedTime(entry.expire_time, "expire_time");
  return narrowValidity(cert, {
    ...(notBefore === undefined ? {} : { notBefore }),
    ...(notAfter === undefined ? {} : { notAfter }),
  });
}

function downloadFailed(message: string, cause?: unknown): WechatPayError {
  const detail = isWechatPayError(cause) ? ` [${cause.code}: ${cause.message}]` : "";
  return new WechatPayError("CERT_DOWNLOAD_FAILED", `GET ${CERTIFICATES_PATH}: ${message}${detail}`, { cause });
}

/**
 * `baseUrl` followed by CERTIFICATES_PATH. A base URL that is no URL, or that carries a user name or password, a query
 * or a fragment, is refused without being repeated, nor is its parse error kept as the cause (Node's names the input):
 * fetch refuses credentials in a URL with a TypeError that quotes the URL whole, which the failure's log line printed,
 * and a query or fragment would come before the appended path. @wpn/config refuses such a WECHATPAY_API_BASE_URL at
 * start; this is for every other caller.
 */
function certificatesUrl(baseUrl: string): URL {
  if (!URL.canParse(baseUrl)) throw downloadFailed("baseUrl is not a URL");
  const base = new URL(baseUrl);
  if (base.username !== "" || base.password !== "" || baseUrl.includes("?") || baseUrl.includes("#")) {
    throw downloadFailed("baseUrl carries a user name, password, query or fragment; it is not repeated here");
  }
  return new URL(`${baseUrl.replace(/\/+$/, "")}${CERTIFICATES_PATH}`);
}

export interface DownloadCertificatesArgs {
  /**
   * e.g. https://api.mch.weixin.qq.com; a path prefix is kept (and signed). No user name, password, query or fragment
   * (certificatesUrl).
   */
  baseUrl: string;
  mchid: string;
  /** Serial of the merchant API certificate (商户API证书序列号). */
  merchantSerialNo: string;
  merchantPrivateKey: KeyObject;
  /** 32-byte APIv3 key; decrypts `encrypt_certificate`. */
  apiV3Key: Buffer;
  /**
   * The APIv3 key before a rotation, tried when `apiV3Key` does not decrypt: WeChat encrypts with the old key until
   * the merchant switches in its merchant platform. A list it opens is accepted exactly like one `apiV3Key` opens.
   * A list is trusted for the TLS connection to WeChat's API plus the AEAD under a key the operator configured, and
   * the previous key is configured beside the current one (same environment or `Merchant` row), so it is as safe as
   * the current key; asking for a response signed by an already trusted key instead left a download-only process,
   * restarted with the new key before the switch, with no key at all (every notification 503) until the switch.
   * A key retired because it leaked is not to be configured here (README).
   */
  previousApiV3Key?: Buffer;
  fetch?: typeof fetch;
  now?: () => Date;
  /**
   * Keys already trusted (e.g. the WeChat Pay public key, or the current certificates). The response
   * signature is checked with these when they know its serial, otherwise with the downloaded set.
   */
  trustedKeys?: KeyStore;
  toleranceSeconds?: number;
  timeoutMs?: number;
}

/**
 * Downloads the platform certificates: signed `GET /v3/certificates`, then decrypts each
 * `encrypt_certificate` (AES-256-GCM under the APIv3 key), checks each certificate's serial against
 * `serial_no`, and verifies the response signature (`Wechatpay-*` headers, same message as notifications).
 * Each certificate's `notBefore`/`notAfter` is its own validity narrowed to the listed `effective_time` and
 * `expire_time` (see withinListing): every certificate WeChat lists is returned, also one already retired — the
 * refresher decides what to trust when.
 *
 * What makes the result trustworthy: the GCM tag under the APIv3 key, which only WeChat and the merchant
 * know. The response signature is checked too (as the official SDKs do). Everything that fails is
 * CERT_DOWNLOAD_FAILED with the underlying error as `cause`.
 */
export async function downloadCertificates(args: DownloadCertificatesArgs): Promise<LoadedCertificate[]> {
  const now = args.now ?? (() => new Date());
  const fetchImpl = args.fetch ?? globalThis.fetch;
  const url = certificatesUrl(args.baseUrl);
  const authorization = buildAuthorization({
    mchid: args.mchid,
    serialNo: args.merchantSerialNo,
    privateKey: args.merchantPrivateKey,
    method: "GET",
    urlPath: url.pathname + url.search,
    now: now(),
  });

  let status: number;
  let headers: Record<string, string>;
  let raw: Buffer;
  try {
    const response = await fetchImpl(url, {
      method: "GET",
      headers: { Accept: "application/json", Authorization: authorization, "User-Agent": USER_AGENT },
      signal: AbortSignal.timeout(args.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS),
    });
    status = response.status;
    headers = Object.fromEntries(response.headers.entries());
    raw = Buffer.from(await response.arrayBuffer());
  } catch (cause) {
    throw downloadFailed(`request to ${url.origin} failed`, cause);
  }
  if (status < 200 || status > 299) {
    throw downloadFailed(`HTTP ${status}: ${raw.toString("utf8").slice(0, 200)}`);
  }

  const downloaded = new KeyStore();
  const certificates: LoadedCertificate[] = [];
  try {
    const parsed = certificatesResponseSchema.safeParse(
      parseJsonBytes(raw, "ENVELOPE_INVALID", "certificates response"),
    );
    if (!parsed.success) {
      throw new WechatPayError("ENVELOPE_INVALID", `certificates response: ${describeIssues(parsed.error.issues)}`);
    }
    for (const entry of parsed.data.data) {
      const enc = entry.encrypt_certificate;
      if (enc.algorithm !== AEAD_AES_256_GCM) {
        throw new WechatPayError(
          "ALGORITHM_UNSUPPORTED",
          `encrypt_certificate.algorithm "${enc.algorithm}" is not supported`,
        );
      }
      const decrypt = (key: Buffer) =>
        decryptAeadAes256Gcm({
          key,
          nonce: enc.nonce,
          associatedData: enc.associated_data ?? "",
          ciphertext: enc.ciphertext,
        });
      const pem = openWithKeyOrPrevious(decrypt, args.apiV3Key, args.previousApiV3Key);
      const loaded = loadCertificate(pem);
      // Node spells a serial with its leading zeros, WeChat's Java side (BigInteger.toString(16)) may not.
      if (!sameCertificateSerial(loaded.serial, entry.serial_no)) {
        throw new WechatPayError(
          "KEY_INVALID",
          `certificate serial ${loaded.serial} differs from serial_no ${entry.serial_no}`,
        );
      }
      const cert = withinListing(loaded, entry);
      downloaded.addCertificate(cert);
      certificates.push(cert);
    }
    const trusted = args.trustedKeys;
    const keys: KeyResolver = {
      resolve: (serial, at) => (trusted?.has(serial) ? trusted.resolve(serial, at) : downloaded.resolve(serial, at)),
    };
    verifyV3(readV3Headers(headers), raw, { keys, now: now(), toleranceSeconds: args.toleranceSeconds });
  } catch (cause) {
    throw downloadFailed("response rejected", cause);
  }
  return certificates;
}

/**
 * `listed` with the key object of `held` when both are the same certificate (same PEM). Each download parses the list
 * afresh; an RsaVerifyPool hands every key object it meets to its threads once, and they keep it: a new object per
 * download of an unchanged certificate was one more key (~2.6 KB) held by each thread for as long as it ran.
 */
function sameKey(held: LoadedCertificate | undefined, listed: LoadedCertificate): LoadedCertificate {
  return held !== undefined && held.pem === listed.pem ? { ...listed, publicKey: held.publicKey } : listed;
}

/** Default minimum time between two downloads triggered by unknown serials, in milliseconds. */
export const DEFAULT_MIN_REFRESH_INTERVAL_MS = 60_000;

export interface CertificateRefresherOptions {
  store: KeyStore;
  /** Usually `() => downloadCertificates({...})` for one merchant. */
  download: () => Promise<LoadedCertificate[]>;
  /**
   * Certificates an earlier refresher of the same merchant downloaded (its `downloaded()`), e.g. before the merchant's
   * settings were edited: added to the store and owned by this refresher, so an edit does not drop keys that still
   * verify, and a later download that no longer lists one removes it.
   */
  inherited?: readonly LoadedCertificate[];
  /** Milliseconds; at most one download starts per interval (failed ones count). Default 60 000. */
  minIntervalMs?: number;
  /**
   * Clock of the throttle in milliseconds, injectable for tests. Default `performance.now()`: monotonic, so a
   * wall-clock step backwards cannot block downloads for as long as it stepped.
   */
  now?: () => number;
  /** The date a download's certificates are judged at (which are past their expiry); default `new Date()`. */
  wallClock?: () => Date;
}

/**
 * Key resolver that downloads the certificate list when a notification names a serial we do not know
 * (the "lazy load" strategy of WeChat's certificate-update guide), with two guards:
 * - at most one download per `minIntervalMs`, so a forged `Wechatpay-Serial` cannot make us hammer WeChat;
 * - concurrent misses share the one in-flight download.
 * Use one refresher per merchant (each has its own store, credentials and throttle). Downloaded
 * certificates are added to the store; one that an earlier download brought and WeChat no longer lists is removed
 * (during a rotation WeChat lists old and new, so only a withdrawn certificate goes). A listed certificate past its
 * expiry at the download (`certificateExpired`: its validity as listed, so past the `expire_time` WeChat retires it
 * at) is treated as not listed: never added, and removed when an earlier download brought it — as the official
 * SDKs keep no expired certificate (wechatpay-apache-httpclient skips them, wechatpay-java's check of the list
 * refuses them). Between its expiry and that download, `KeyStore.resolve` refuses it (CERTIFICATE_EXPIRED). A failed
 * download drops the ones it added that are past their expiry too.
 * Certificates that were in the store before the refresher added them (configured ones) are never removed, but one
 * WeChat lists is held with the listed validity: a retirement WeChat announces applies to it too. A list
 * with no certificate is a failed download: WeChat always lists the certificate it signs with; a list of retired
 * certificates only is applied (none of them trusted any longer).
 */
export class CertificateRefresher implements AsyncKeyResolver {
  readonly store: KeyStore;
  readonly #download: () => Promise<LoadedCertificate[]>;
  readonly #minIntervalMs: number;
  readonly #now: () => number;
  readonly #wallClock: () => Date;
  /** Clock value of the last download start; -Infinity = never, so the first miss always downloads. */
  #lastAttemptMs = Number.NEGATIVE_INFINITY;
  #inFlight: Promise<void> | undefined;
  #downloads = 0;
  #lastFailed = false;
  /** Serials this refresher added to the store (and may remove when WeChat stops listing them). */
  #added = new Set<string>();

  constructor(opts: CertificateRefresherOptions) {
    this.store = opts.store;
    this.#download = opts.download;
    this.#minIntervalMs = opts.minIntervalMs ?? DEFAULT_MIN_REFRESH_INTERVAL_MS;
    this.#now = opts.now ?? (() => performance.now());
    this.#wallClock = opts.wallClock ?? (() => new Date());
    if (!Number.isFinite(this.#minIntervalMs) || this.#minIntervalMs < 0) {
      throw new RangeError(`minIntervalMs must be a finite number >= 0, got ${this.#minIntervalMs}`);
    }
    for (const cert of opts.inherited ?? []) {
      if (!this.store.has(cert.serial)) {
        this.store.addCertificate(cert);
        this.#added.add(cert.serial);
      }
    }
  }

  /** The certificates this refresher downloaded (or inherited) and the store still holds. */
  downloaded(): LoadedCertificate[] {
    const held: LoadedCertificate[] = [];
    for (const serial of this.#added) {
      const cert = this.store.certificate(serial);
      if (cert) held.push(cert);
    }
    return held;
  }

  /** How many downloads were started so far (for metrics and tests). */
  get downloadCount(): number {
    return this.#downloads;
  }

  /** Whether the last download that ran failed (a throttled `refresh()` then means "still failing"). */
  get lastDownloadFailed(): boolean {
    return this.#lastFailed;
  }

  /**
   * Starts a download unless one started less than `minIntervalMs` ago; joins the in-flight one if any.
   * Resolves `true` when a download ran (or was joined) and succeeded, `false` when throttled.
   * Rejects with CERT_DOWNLOAD_FAILED when the download fails.
   */
  refresh(): Promise<boolean> {
    if (this.#inFlight) return this.#inFlight.then(() => true);
    const t = this.#now();
    if (t - this.#lastAttemptMs < this.#minIntervalMs) {
      return Promise.resolve(false);
    }
    this.#lastAttemptMs = t;
    this.#downloads += 1;
    const run = (async () => {
      let certs: LoadedCertificate[];
      try {
        certs = await this.#download();
        if (certs.length === 0) {
          throw new WechatPayError("CERT_DOWNLOAD_FAILED", "WeChat Pay listed no platform certificate");
        }
      } catch (cause) {
        this.#lastFailed = true;
        this.#dropExpired();
        throw isWechatPayError(cause) && cause.code === "CERT_DOWNLOAD_FAILED"
          ? cause
          : new WechatPayError("CERT_DOWNLOAD_FAILED", "certificate download failed", { cause });
      }
      this.#lastFailed = false;
      this.#apply(certs);
    })();
    const inFlight = run.finally(() => {
      this.#inFlight = undefined;
    });
    this.#inFlight = inFlight;
    return inFlight.then(() => true);
  }

  /**
   * Removes the certificates this refresher added that are past their expiry (`certificateExpired`): they verify
   * nothing any more, and a download that worked would drop them. Run on a failed download, so that a merchant whose
   * downloads fail for good (moved to WeChat's public key: /v3/certificates answers 404) does not hold them, counted
   * in the expiry gauge, until the process restarts.
   */
  #dropExpired(): void {
    const now = this.#wallClock();
    for (const serial of this.#added) {
      const cert = this.store.certificate(serial);
      if (cert === undefined || certificateExpired(cert, now)) {
        this.store.removeCertificate(serial);
        this.#added.delete(serial);
      }
    }
  }

  /**
   * Adds the listed certificates and removes those this refresher added earlier that are no longer listed; a listed
   * certificate past its expiry counts as not listed. A configured certificate (in the store, not added by this
   * refresher) that WeChat lists is narrowed to the listing's validity — its retirement (`expire_time`), even one
   * already past — on top of its configured bounds (a PlatformCertificate row's columns), never widened; it is never
   * removed, nor replaced by another certificate under its serial.
   */
  #apply(certs: readonly LoadedCertificate[]): void {
    for (const cert of certs) {
      const held = this.store.certificate(cert.serial);
      if (held !== undefined && !this.#added.has(held.serial) && held.pem === cert.pem) {
        this.store.addCertificate(narrowValidity(held, { notBefore: cert.notBefore, notAfter: cert.notAfter }));
      }
    }
    const now = this.#wallClock();
    const current = certs.filter((cert) => !certificateExpired(cert, now));
    const listed = new KeyStore();
    for (const cert of current) listed.addCertificate(cert);
    for (const serial of this.#added) {
      if (!listed.has(serial)) {
        this.store.removeCertificate(serial);
        this.#added.delete(serial);
      }
    }
    for (const cert of current) {
      if (!this.store.has(cert.serial)) this.#added.add(cert.serial);
      // Replaced even when known: a re-issued certificate under the same serial must win, and the validity is the
      // latest listing's. The same certificate keeps its key object (sameKey).
      if (this.#added.has(cert.serial)) this.store.addCertificate(sameKey(this.store.certificate(cert.serial), cert));
    }
  }

  /**
   * The key for `serial`; when the store does not know it, refresh first (subject to the throttle).
   * Known-but-expired certificates do not trigger a download: WeChat never signs with them (one a download dropped
   * for its expiry is unknown again, and throttled like any unknown serial). Nor does a public-key id
   * (`isPublicKeyId`): no certificate list holds one.
   */
  async resolveOrRefresh(serial: string, now: Date): Promise<KeyObject> {
    if (!this.store.has(serial) && !isPublicKeyId(serial)) {
      const refreshed = await this.refresh();
      if (!refreshed && !this.store.has(serial)) {
        const ago = this.#now() - this.#lastAttemptMs; // finite: refresh() only throttles after an attempt
        throw new WechatPayError(
          "SERIAL_UNKNOWN",
          `no key with serial "${serial}"; certificate download skipped (last attempt ${Math.round(ago / 1000)} s ago, ` +
            `at most one per ${Math.round(this.#minIntervalMs / 1000)} s)`,
        );
      }
    }
    return this.store.resolve(serial, now);
  }

  /** `AsyncKeyResolver` view, so a refresher can be passed as `keys` to `verifyV3Async`. */
  resolve(serial: string, now: Date): Promise<KeyObject> {
    return this.resolveOrRefresh(serial, now);
  }
}
