import {
  CertificateRefresher,
  DEFAULT_MIN_REFRESH_INTERVAL_MS,
  downloadCertificates,
  type KeyStore,
  type LoadedCertificate,
  loadPrivateKey,
} from "@wpn/wechatpay";
import type { Logger } from "pino";
import type { IngressMetrics } from "../metrics.ts";

/** Told of every download that ran (scheduled or on demand), exactly once each. */
export interface DownloadObserver {
  downloaded(mchid: string, certificates: readonly LoadedCertificate[]): void;
  failed(mchid: string, error: unknown): void;
}

/** Logs each download and counts it in `wpn_ingress_certificate_downloads_total{result}`. */
export function downloadObserver(logger: Logger, metrics: IngressMetrics): DownloadObserver {
  return {
    downloaded(mchid, certificates) {
      metrics.certificateDownloads.inc({ result: "ok" });
      logger.info(
        { mchid, certificates: certificates.map((c) => ({ serial: c.serial, notAfter: c.notAfter.toISOString() })) },
        "platform certificates downloaded",
      );
    },
    failed(mchid, error) {
      metrics.certificateDownloads.inc({ result: "failed" });
      logger.warn({ err: error, mchid, code: "CERT_DOWNLOAD_FAILED" }, "platform certificate download failed");
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
 * already trusted), otherwise with the downloaded set.
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
  return new CertificateRefresher({
    store: keys,
    ...(clock === undefined ? {} : { now: clock }),
    ...(inherited === undefined ? {} : { inherited }),
    download: async () => {
      try {
        const certificates = await downloadCertificates({
          baseUrl: settings.baseUrl,
          mchid: settings.mchid,
          merchantSerialNo: settings.merchantSerialNo,
          merchantPrivateKey,
          apiV3Key: settings.apiV3Key,
          ...(settings.previousApiV3Key === undefined ? {} : { previousApiV3Key: settings.previousApiV3Key }),
          trustedKeys: keys,
          toleranceSeconds: settings.toleranceSeconds,
        });
        observer?.downloaded(settings.mchid, certificates);
        return certificates;
      } catch (error) {
        observer?.failed(settings.mchid, error);
        throw error;
      }
    },
  });
}

/**
 * Keeps a merchant's platform certificates current without anybody's help: a download at start, then one every
 * `intervalMs`; after a failed (or throttled) attempt the next comes after `retryMs`. Notifications that name a
 * serial nobody knows trigger downloads of their own through the same refresher (the route), whose throttle —
 * one download per minute — bounds what forged serials can cost. Never throws: failures are logged and counted
 * by the refresher's observer, and /health/ready shows whether any key is loaded.
 */
export class CertificateSchedule {
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #first: Promise<void> | undefined;

  constructor(
    private readonly refresher: CertificateRefresher,
    private readonly intervalMs: number,
    private readonly retryMs: number = DEFAULT_MIN_REFRESH_INTERVAL_MS,
  ) {}

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
    let ok: boolean;
    try {
      ok = await this.refresher.refresh();
    } catch {
      // Already logged and counted by the refresher's observer; the schedule only decides when to try again.
      ok = false;
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), ok ? this.intervalMs : this.retryMs);
    this.#timer.unref();
  }
}
