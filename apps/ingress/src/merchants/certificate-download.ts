import {
  CertificateRefresher,
  certificateExpired,
  DEFAULT_MIN_REFRESH_INTERVAL_MS,
  downloadCertificates,
  KeyStore,
  type LoadedCertificate,
  loadPrivateKey,
  WechatPayError,
} from "@wpn/wechatpay";
import type { Logger } from "pino";
import type { IngressMetrics } from "../metrics.ts";

/** What the refresher knows of a successful download besides the list, for its log line. */
export interface DownloadContext {
  /**
   * Serials the merchant trusted from an earlier download that this list no longer has, before their expiry (the
   * validity as they were listed: their own notAfter, or an earlier `expire_time`): removed now, withdrawn by WeChat.
   */
  withdrawn: readonly string[];
  /**
   * Serials an earlier download brought that this list no longer has, past their expiry: a certificate that ran out
   * (its notAfter, or the `expire_time` WeChat retired it at) and that WeChat then stopped listing — the normal end of
   * a certificate, removed now. Since their expiry, notifications signed with them were refused already
   * (CERTIFICATE_EXPIRED, a minute allowed).
   */
  expiredUnlisted: readonly string[];
  /**
   * Serials this list has that are past their expiry (`certificateExpired`: mostly the `expire_time` WeChat moved
   * forward to retire a certificate at its switch): not trusted, and removed if trusted before.
   */
  expired: readonly string[];
  /** Failed downloads right before this one (0: the last one worked, or this is the first). */
  failuresBefore: number;
}

/** What the refresher knows of a failed download, to tell a warning from noise. */
export interface FailureContext {
  /** Failed downloads in a row, this one included (1: the first since the last success, or since the start). */
  consecutive: number;
  /**
   * The merchant verifies with its WeChat Pay public key and holds no downloaded certificate, so the failure refuses
   * nothing it could verify a moment ago: the state of a merchant WeChat issues no platform certificate to (new ones
   * since 2024-10, or whose certificate expired: /v3/certificates answers 404 "证书不存在" or 500 "系统繁忙"), whose
   * download settings are left over.
   */
  publicKeyCovers: boolean;
}

/** Told of every download that ran (scheduled or on demand), exactly once each. */
export interface DownloadObserver {
  downloaded(mchid: string, certificates: readonly LoadedCertificate[], context: DownloadContext): void;
  failed(mchid: string, error: unknown, context: FailureContext): void;
}

/**
 * Logs each download and counts it in `wpn_ingress_certificate_downloads_total{result}` (every one, whatever is
 * logged). A failure is a warning (CERT_DOWNLOAD_FAILED), except the repeats of one the public key covers: its first
 * is a warning saying so, the following ones of the same run of failures are debug lines, since such a merchant fails
 * at every attempt for as long as the process runs. A certificate that WeChat no longer lists before its expiry is a
 * warning too (CERT_WITHDRAWN): from now on notifications signed with it are refused (401 SERIAL_UNKNOWN). One it
 * lists past its expiry is named on the info line (`expired`), not in `certificates`, and one it no longer lists
 * after its expiry on an info line of its own (CERT_EXPIRED_UNLISTED): a retirement, or the end of a certificate's
 * validity, no warning.
 */
export function downloadObserver(logger: Logger, metrics: IngressMetrics): DownloadObserver {
  return {
    downloaded(mchid, certificates, { withdrawn, expiredUnlisted, expired, failuresBefore }) {
      metrics.certificateDownloads.inc({ result: "ok" });
      logger.info(
        {
          mchid,
          certificates: certificates
            .filter((c) => !expired.includes(c.serial))
            .map((c) => ({ serial: c.serial, notAfter: c.notAfter.toISOString() })),
          ...(expired.length > 0 ? { expired } : {}),
          ...(failuresBefore > 0 ? { failuresBefore } : {}),
        },
        failuresBefore > 0 ? "platform certificates downloaded again" : "platform certificates downloaded",
      );
      if (withdrawn.length > 0) {
        logger.warn(
          { mchid, withdrawn, code: "CERT_WITHDRAWN" },
          "platform certificates no longer listed by WeChat Pay; no longer trusted",
        );
      }
      if (expiredUnlisted.length > 0) {
        logger.info(
          { mchid, expired: expiredUnlisted, code: "CERT_EXPIRED_UNLISTED" },
          "platform certificates past their expiry no longer listed by WeChat Pay; removed",
        );
      }
    },
    failed(mchid, error, { consecutive, publicKeyCovers }) {
      metrics.certificateDownloads.inc({ result: "failed" });
      const fields = { err: error, mchid, consecutive, code: "CERT_DOWNLOAD_FAILED" };
      if (!publicKeyCovers) logger.warn(fields, "platform certificate download failed");
      else if (consecutive === 1) {
        logger.warn(
          fields,
          "platform certificate download failed; the merchant verifies with its WeChat Pay public key, so nothing is " +
            "refused for it. If WeChat issues this merchant no platform certificate, remove its download settings; " +
            "until a download works, later failures are logged at debug",
        );
      } else logger.debug(fields, "platform certificate download failed again");
    },
  };
}

export interface CertificateDownloadSettings {
  mchid: string;
  /** WECHATPAY_API_BASE_URL. */
  baseUrl: string;
  merchantSerialNo: string;
  merchantPrivateKeyPem: string;
  /** 32-byte APIv3 key: only it decrypts the downloaded certificates, which is what makes them trustworthy. */
  apiV3Key: Buffer;
  /** The APIv3 key before a rotation, tried second (WeChat may still encrypt with it). */
  previousApiV3Key: Buffer | undefined;
  toleranceSeconds: number;
}

/**
 * A `CertificateRefresher` that downloads into `keys` (the merchant's KeyStore, so verification sees new
 * certificates at once). The merchant's private key is parsed here, once; a wrong file throws at start.
 * The response signature is checked with `keys` when they know its serial (the public key or a certificate
 * already trusted), otherwise with the downloaded set. An empty list is a failed download (the refresher's rule,
 * applied here so that the observer hears of it as one).
 */
export function certificateRefresher(
  settings: CertificateDownloadSettings,
  keys: KeyStore,
  {
    observer,
    clock,
    inherited,
  }: { observer?: DownloadObserver; clock?: () => number; inherited?: readonly LoadedCertificate[] },
): CertificateRefresher {
  const merchantPrivateKey = loadPrivateKey(settings.merchantPrivateKeyPem);
  /** Failed downloads since the last one that worked. */
  let failures = 0;
  const refresher: CertificateRefresher = new CertificateRefresher({
    store: keys,
    ...(clock === undefined ? {} : { now: clock }),
    ...(inherited === undefined ? {} : { inherited }),
    download: async () => {
      let certificates: LoadedCertificate[];
      try {
        certificates = await downloadCertificates({
          baseUrl: settings.baseUrl,
          mchid: settings.mchid,
          merchantSerialNo: settings.merchantSerialNo,
          merchantPrivateKey,
          apiV3Key: settings.apiV3Key,
          ...(settings.previousApiV3Key === undefined ? {} : { previousApiV3Key: settings.previousApiV3Key }),
          trustedKeys: keys,
          toleranceSeconds: settings.toleranceSeconds,
        });
        if (certificates.length === 0) {
          throw new WechatPayError("CERT_DOWNLOAD_FAILED", "WeChat Pay listed no platform certificate");
        }
      } catch (error) {
        failures += 1;
        const held = refresher.downloaded();
        const publicKeyCovers = held.length === 0 && keys.describe().some((entry) => entry.kind === "publicKey");
        observer?.failed(settings.mchid, error, { consecutive: failures, publicKeyCovers });
        throw error;
      }
      // What the refresher is about to remove: what it downloaded before and this list no longer has — withdrawn, or
      // simply run out (past the notAfter it was held with, no tolerance: the certificate's validity had ended) —
      // and what the list has past its expiry (the refresher's wall clock is the default one too).
      const listed = new KeyStore();
      for (const cert of certificates) listed.addCertificate(cert);
      const now = new Date();
      const unlisted = refresher.downloaded().filter((cert) => !listed.has(cert.serial));
      const ranOut = (cert: LoadedCertificate) => cert.notAfter.getTime() <= now.getTime();
      const withdrawn = unlisted.filter((cert) => !ranOut(cert)).map((cert) => cert.serial);
      const expiredUnlisted = unlisted.filter(ranOut).map((cert) => cert.serial);
      const expired = certificates.filter((cert) => certificateExpired(cert, now)).map((cert) => cert.serial);
      observer?.downloaded(settings.mchid, certificates, {
        withdrawn,
        expiredUnlisted,
        expired,
        failuresBefore: failures,
      });
      failures = 0;
      return certificates;
    },
  });
  return refresher;
}

/** The scheduled download's timing; one setting for every downloading merchant (WECHATPAY_CERT_REFRESH_…). */
export interface CertificateScheduleTiming {
  /** Period between downloads that worked, ms (WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS × 1000). */
  intervalMs: number;
  /**
   * Wait after the first failed (or throttled) attempt, ms, doubled at each further failure in a row up to
   * `intervalMs`. Default: the refresher's throttle, one download a minute, which a sooner retry would only meet.
   */
  retryMs?: number;
  /** Jitter source, uniform in [0, 1); default `Math.random`. */
  random?: () => number;
}

/**
 * Every wait is shortened by up to this fraction, at random: processes started together (a deployment) drift apart
 * instead of calling WeChat at the same moments, and no wait exceeds the configured period — WeChat asks for a
 * period under 12 h, and a setting under it stays under it. No wait is shortened below the retry delay, though.
 */
export const SCHEDULE_JITTER = 0.1;

/** Past this many doublings the retry wait is the period anyway (2^20 minutes is years); keeps the product finite. */
const MAX_DOUBLINGS = 20;

/**
 * Keeps a merchant's platform certificates current without anybody's help — the environment's merchant and every
 * `Merchant` row that downloads alike: a download at start, then one every `intervalMs`, each applying WeChat's list
 * as it is (a certificate published ahead of a rotation is added before any notification is signed with it; one that
 * WeChat no longer lists is no longer trusted: apps/ingress/README.md, "Platform certificate download"). A failed
 * attempt keeps every certificate held and is tried again after `retryMs`, doubling at each further failure up to
 * `intervalMs`; a throttled one (an on-demand download ran within the minute) after `retryMs`. Notifications that
 * name a serial nobody knows trigger downloads of their own through the same refresher (the route), whose throttle —
 * one download per minute — bounds what forged serials can cost. Never throws: failures are logged and counted by the
 * refresher's observer, and /health/ready shows whether any key is loaded.
 */
export class CertificateSchedule {
  readonly #refresher: CertificateRefresher;
  readonly #intervalMs: number;
  readonly #retryMs: number;
  readonly #random: () => number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #first: Promise<void> | undefined;
  /** Failed attempts in a row. */
  #failures = 0;

  constructor(refresher: CertificateRefresher, timing: CertificateScheduleTiming) {
    this.#refresher = refresher;
    this.#intervalMs = timing.intervalMs;
    this.#retryMs = Math.min(timing.retryMs ?? DEFAULT_MIN_REFRESH_INTERVAL_MS, timing.intervalMs);
    this.#random = timing.random ?? Math.random;
  }

  /** Starts the first download; the returned promise settles when it did (tests, logs), and never rejects. */
  start(): Promise<void> {
    this.#first ??= this.#run();
    return this.#first;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #run(): Promise<void> {
    let outcome: "ok" | "throttled" | "failed";
    try {
      outcome = (await this.#refresher.refresh()) ? "ok" : "throttled";
    } catch {
      // Already logged and counted by the refresher's observer; the schedule only decides when to try again.
      outcome = "failed";
    }
    if (this.#stopped) return;
    if (outcome === "ok") this.#failures = 0;
    if (outcome === "failed") this.#failures += 1;
    const waitMs =
      outcome === "ok"
        ? this.#intervalMs
        : outcome === "throttled"
          ? this.#retryMs
          : Math.min(this.#retryMs * 2 ** Math.min(this.#failures - 1, MAX_DOUBLINGS), this.#intervalMs);
    // Never below the retry delay (by default the refresher's throttle, one download a minute): a wait the jitter took
    // under it would be throttled, and wait a whole retry delay more.
    const delayMs = Math.max(waitMs * (1 - SCHEDULE_JITTER * this.#random()), this.#retryMs);
    this.#timer = setTimeout(() => void this.#run(), delayMs);
    this.#timer.unref();
  }
}
