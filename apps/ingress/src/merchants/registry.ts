import { createHash } from "node:crypto";
import { type Config, MCHID_PATTERN, readMerchantPrivateKeyPem } from "@wpn/config";
import {
  CERTIFICATE_VALIDITY_TOLERANCE_MS,
  type CertificateRefresher,
  isWechatPayError,
  KeyStore,
  type LoadedCertificate,
  loadCertificate,
  loadCertificates,
  loadPublicKey,
  narrowValidity,
  sameCertificateSerial,
  WechatPayError,
} from "@wpn/wechatpay";
import type { Logger } from "pino";
import { TIMED_OUT, within } from "../within.ts";
import {
  CertificateSchedule,
  type CertificateScheduleTiming,
  certificateRefresher,
  type DownloadObserver,
} from "./certificate-download.ts";

/** What the ingress needs to authenticate one merchant's notifications. No APIv3 key: the worker decrypts. */
export interface MerchantKeys {
  readonly mchid: string;
  readonly appid: string;
  /** WeChat Pay public key(s) and platform certificates, parsed once into KeyObjects. */
  readonly keys: KeyStore;
  /** APIv2 key (32 chars); undefined = the v2 routes refuse this merchant. */
  readonly apiV2Key: string | undefined;
  /** The APIv2 key before a rotation, accepted too while it is configured (see notify-v2.ts). */
  readonly apiV2KeyPrevious: string | undefined;
  readonly source: "env" | "database";
  /** Downloads platform certificates into `keys` (certificate download configured); see certificate-download.ts. */
  readonly certificateRefresher?: CertificateRefresher;
}

/**
 * What a reload of the merchant table can refuse, by the code it logs: a key of a row (kept as loaded before, or left
 * out) or a whole row. Each is exported as a series of `wpn_ingress_merchant_refusals{code}`, 0 when none.
 */
export const MERCHANT_REFUSAL_CODES = [
  "MERCHANT_KEY_UNUSABLE",
  "MERCHANT_KEY_INCOMPLETE",
  "CERTIFICATE_SERIAL_MISMATCH",
  "MERCHANT_UNUSABLE",
  "MERCHANT_MCHID_INVALID",
] as const;
export type MerchantRefusalCode = (typeof MERCHANT_REFUSAL_CODES)[number];

/** A `Merchant` row with its `PlatformCertificate`s, as the source returns it. */
export interface MerchantRecord {
  mchid: string;
  appid: string;
  apiV2Key: string | null;
  /** Absent in records written before the column mattered here: none. */
  apiV2KeyPrevious?: string | null;
  publicKeyId: string | null;
  publicKeyPem: string | null;
  /**
   * `notBefore`/`notAfter`: the row's validity columns, which bound the certificate within its own X.509 validity
   * (`narrowValidity`): where an operator records the `expire_time` WeChat lists (it retires a certificate by moving
   * it forward), as the dashboard shows them. Absent (sources other than PostgreSQL): the X.509 validity alone.
   */
  certificates: readonly { serial: string; pem: string; notBefore?: Date; notAfter?: Date }[];
  /**
   * Certificate download: the merchant API certificate's serial and private key, and the APIv3 key that decrypts
   * what is downloaded. The source returns them only for a row with a download column set (null otherwise), so
   * the ingress holds no APIv3 key it does not need; a row with one of the two is refused (logged).
   */
  download: {
    apiSerialNo: string | null;
    apiPrivateKeyPem: string | null;
    apiV3Key: string;
    apiV3KeyPrevious: string | null;
  } | null;
}

/** How merchants of the source download their platform certificates (those whose row has the credentials). */
export interface RegistryDownloadOptions {
  /** WECHATPAY_API_BASE_URL. */
  baseUrl: string;
  toleranceSeconds: number;
  observer?: DownloadObserver;
  /** Clock of each refresher's one-download-a-minute throttle, ms (default: monotonic, `performance.now()`). */
  clock?: () => number;
  /** Each downloading merchant's scheduled download: the default merchant's timing (app.ts), for the rows alike. */
  schedule: CertificateScheduleTiming;
}

/** Where extra merchants come from; `load` returns every enabled merchant. */
export interface MerchantSource {
  load(): Promise<MerchantRecord[]>;
}

/**
 * The single-merchant environment variables as the default merchant. Throws WechatPayError on bad key files, and
 * ConfigError when the merchant private key file cannot be read.
 * With certificate download configured it also gets a `certificateRefresher` (nothing is downloaded here: the
 * app's CertificateSchedule starts that), whose downloads `download.observer` hears of; `download.clock` (ms)
 * drives its one-download-a-minute throttle.
 */
export function defaultMerchantFromConfig(
  config: Config,
  download: { observer?: DownloadObserver; clock?: () => number } = {},
): MerchantKeys {
  const keys = new KeyStore();
  if (config.WECHATPAY_PUBLIC_KEY_ID !== undefined && config.publicKeyPem !== undefined) {
    keys.addPublicKey(config.WECHATPAY_PUBLIC_KEY_ID, loadPublicKey(config.publicKeyPem));
  }
  for (const cert of configuredCertificates(config.platformCertificatePems)) keys.addCertificate(cert);
  const merchantPrivateKeyPem = readMerchantPrivateKeyPem(config);
  const refresher =
    config.WECHATPAY_MERCHANT_SERIAL_NO !== undefined && merchantPrivateKeyPem !== undefined
      ? certificateRefresher(
          {
            mchid: config.WECHATPAY_MCHID,
            baseUrl: config.WECHATPAY_API_BASE_URL,
            merchantSerialNo: config.WECHATPAY_MERCHANT_SERIAL_NO,
            merchantPrivateKeyPem,
            apiV3Key: config.apiV3KeyBytes,
            previousApiV3Key: config.previousApiV3KeyBytes,
            toleranceSeconds: config.WECHATPAY_TIMESTAMP_TOLERANCE_SECONDS,
          },
          keys,
          download,
        )
      : undefined;
  return {
    mchid: config.WECHATPAY_MCHID,
    appid: config.WECHATPAY_APPID,
    keys,
    apiV2Key: config.WECHATPAY_APIV2_KEY,
    apiV2KeyPrevious: config.WECHATPAY_APIV2_KEY_PREVIOUS,
    source: "env",
    ...(refresher === undefined ? {} : { certificateRefresher: refresher }),
  };
}

/**
 * Every certificate of the WECHATPAY_PLATFORM_CERT_PATHS files, each filed under its own serial (the PEM's: no other
 * source names one). A file may hold several (`loadCertificates`), as the dashboard lists them; a file that does not
 * load is KEY_INVALID naming its place in the setting, which stops the process at start.
 */
function configuredCertificates(pems: readonly string[]): LoadedCertificate[] {
  return pems.flatMap((pem, index) => {
    try {
      return loadCertificates(pem);
    } catch (error) {
      if (!isWechatPayError(error)) throw error;
      throw new WechatPayError("KEY_INVALID", `WECHATPAY_PLATFORM_CERT_PATHS file ${index + 1}: ${error.message}`, {
        cause: error,
      });
    }
  });
}

/**
 * Why `lookup` has no merchant for a well-formed mchid: `unknown` — the merchant table, as last read, does not have
 * it; `unavailable` — the table could not be read (not yet since the start, or not at the last try), so it may be a
 * merchant the process has not seen, one added meanwhile.
 */
export type MerchantMissing = "unknown" | "unavailable";

export interface MerchantRegistryOptions {
  defaultMerchant: MerchantKeys;
  /** Absent = single-merchant deployment: only the default merchant exists. */
  source?: MerchantSource;
  /** Background reload period, ms. */
  refreshIntervalMs?: number;
  /** Until the table has loaded once: the wait before trying again, ms, doubled up to `refreshIntervalMs`. */
  firstLoadRetryMs?: number;
  /** At most one on-demand reload per this period, however many unknown mchids arrive, ms. */
  unknownLookupIntervalMs?: number;
  /** How long a request waits for an on-demand reload before answering MERCHANTS_UNAVAILABLE, ms. */
  lookupTimeoutMs?: number;
  clock?: () => number;
  logger: Logger;
  /** Absent: rows' download credentials are ignored (logged). */
  download?: RegistryDownloadOptions;
}

interface Loaded {
  merchant: MerchantKeys;
  /** Hash of the row's key material: unchanged rows keep their parsed KeyStore across reloads. */
  fingerprint: string;
  /**
   * Keys served as an earlier build loaded them because the row's current value for them does not load (public-key
   * ids, certificate serials, `apiV2Key`). Empty once the row is fixed; a restarted process has none of them.
   */
  kept: readonly string[];
  /**
   * The log code of each key of the row this build refused (MERCHANT_KEY_UNUSABLE, MERCHANT_KEY_INCOMPLETE,
   * CERTIFICATE_SERIAL_MISMATCH), kept in its place or left out: counted by `refusals` until the row is fixed.
   */
  refused: readonly MerchantRefusalCode[];
  /**
   * Certificates an earlier certificate download brought, held as fixed ones because this merchant no longer
   * downloads (download settings cleared or unusable): the next build carries them again, as a refresher's own
   * downloads are carried, so that a second edit of the row does not drop them. Empty while it downloads.
   */
  downloads: readonly LoadedCertificate[];
  /** The scheduled download of a merchant that downloads: started once it is served, stopped once it no longer is. */
  schedule: CertificateSchedule | undefined;
}

/**
 * Merchants by mchid, all in memory: the request path never touches PostgreSQL except through `lookup` of
 * an mchid not seen before, which triggers at most one reload per `unknownLookupIntervalMs` for the whole
 * process (so junk mchids cannot turn into database load). The table is reloaded in the background every
 * `refreshIntervalMs` (after a failed first load sooner: see `start`); a failed reload keeps the previous set. A key
 * whose edited value does not load keeps the key loaded before (see buildMerchant), and a merchant whose changed row
 * has no key at all keeps its previous keys; a key whose columns are cleared is removed. The environment's merchant
 * always wins over a row with the same mchid. A row's merchant that downloads its certificates has a
 * CertificateSchedule of its own, running while that merchant is served (a rebuilt or dropped merchant's stops), as
 * the environment's merchant has one (app.ts): the same timing, so every merchant follows WeChat's list alike.
 */
export class MerchantRegistry {
  readonly #options: Required<Omit<MerchantRegistryOptions, "source" | "download">> & {
    source: MerchantSource | undefined;
    download: RegistryDownloadOptions | undefined;
  };
  #merchants = new Map<string, Loaded>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #reloading: Promise<boolean> | undefined;
  #lastOnDemandAt = Number.NEGATIVE_INFINITY;
  #lastReload: { at: number; ok: boolean } | undefined;
  #loadedOnce = false;
  #refusals: Readonly<Partial<Record<MerchantRefusalCode, number>>> = {};

  constructor(options: MerchantRegistryOptions) {
    this.#options = {
      refreshIntervalMs: 30_000,
      firstLoadRetryMs: 1_000,
      unknownLookupIntervalMs: 60_000,
      lookupTimeoutMs: 1_000,
      clock: Date.now,
      ...options,
      source: options.source,
      download: options.download,
    };
  }

  get defaultMerchant(): MerchantKeys {
    return this.#options.defaultMerchant;
  }

  /** Loaded merchants, the default one included. */
  get size(): number {
    return this.#merchants.size + (this.#merchants.has(this.#options.defaultMerchant.mchid) ? 0 : 1);
  }

  /** Outcome of the last reload (undefined before the first one, or without a source). */
  get lastReload(): { at: number; ok: boolean } | undefined {
    return this.#lastReload;
  }

  /**
   * True once the merchant table has been read (always without a source). Until then only the default merchant is
   * served: any other mchid is `unavailable` (503), never `unknown` (404). Reported by `/health/ready` and exported
   * as `wpn_ingress_merchant_table_loaded`.
   */
  get tableLoaded(): boolean {
    return this.#options.source === undefined || this.#loadedOnce;
  }

  /**
   * Keys of `Merchant` rows served as loaded before because the row's current value does not load: an edit to fix
   * (each was logged when it happened; a restart loses them). Exported as `wpn_ingress_merchant_keys_kept`.
   */
  get keptKeys(): number {
    let count = 0;
    for (const loaded of this.#merchants.values()) count += loaded.kept.length;
    return count;
  }

  /**
   * What the last reload of the merchant table refused, by log code, codes with none left out: a row's key
   * (MERCHANT_KEY_UNUSABLE, MERCHANT_KEY_INCOMPLETE, CERTIFICATE_SERIAL_MISMATCH — served as loaded before or left
   * out, the merchant's other keys serving) or a whole row (MERCHANT_UNUSABLE, MERCHANT_MCHID_INVALID). Each was
   * logged at its reload; this says it is still so. Counted once per reload, so `/health/ready` reads it for free
   * (`merchantRefusals`), and exported as `wpn_ingress_merchant_refusals{code}`. A failed reload keeps the last count.
   */
  get refusals(): Readonly<Partial<Record<MerchantRefusalCode, number>>> {
    return this.#refusals;
  }

  /**
   * The merchant whose platform certificates run out first: for each merchant holding any, when its last certificate
   * stops verifying (`lastCertificateExpiry`: the latest `notAfter` as trusted — X.509, narrowed by WeChat's listing
   * for downloaded ones — plus the minute of clock difference allowed); the earliest of those. Undefined when no merchant holds a certificate. For
   * `wpn_ingress_certificate_expiry_seconds`, computed at scrape time: it walks every merchant.
   */
  earliestCertificateExpiry(): { mchid: string; notAfter: Date } | undefined {
    const { defaultMerchant } = this.#options;
    let earliest: { mchid: string; notAfter: Date } | undefined;
    const consider = (merchant: MerchantKeys) => {
      const notAfter = lastCertificateExpiry(merchant.keys);
      if (notAfter !== undefined && (earliest === undefined || notAfter < earliest.notAfter)) {
        earliest = { mchid: merchant.mchid, notAfter };
      }
    };
    consider(defaultMerchant);
    for (const [mchid, loaded] of this.#merchants) if (mchid !== defaultMerchant.mchid) consider(loaded.merchant);
    return earliest;
  }

  /** In-memory lookup only. */
  get(mchid: string): MerchantKeys | undefined {
    if (mchid === this.#options.defaultMerchant.mchid) return this.#options.defaultMerchant;
    return this.#merchants.get(mchid)?.merchant;
  }

  /**
   * `get`, and for an unknown but well-formed mchid (MCHID_PATTERN of @wpn/config, as every merchant served) one
   * rate-limited reload (bounded by `lookupTimeoutMs`); concurrent callers share the reload. A merchant not found
   * is `unknown` only when the table was read — by that reload, or (within the rate limit) by the last one: a table
   * that could not be read says nothing about a merchant added meanwhile, and a 404 for it would be a tenant's outage
   * (WeChat resends a 503 all the same). A malformed mchid, or any without a source, is `unknown`.
   */
  async lookup(mchid: string): Promise<MerchantKeys | MerchantMissing> {
    const known = this.get(mchid);
    if (known) return known;
    if (!MCHID_PATTERN.test(mchid) || this.#options.source === undefined) return "unknown";
    const now = this.#options.clock();
    let read = this.#lastReload?.ok === true;
    if (this.#reloading !== undefined || now - this.#lastOnDemandAt >= this.#options.unknownLookupIntervalMs) {
      if (this.#reloading === undefined) this.#lastOnDemandAt = now;
      const outcome = await within(this.reload(), this.#options.lookupTimeoutMs);
      read = outcome !== TIMED_OUT && outcome;
    }
    return this.get(mchid) ?? (read ? "unknown" : "unavailable");
  }

  /**
   * First load, then a reload every `refreshIntervalMs`. A failing first load is logged, not thrown — the default
   * merchant needs only Redis — and tried again soon (`firstLoadRetryMs`, doubling up to `refreshIntervalMs`): until
   * it succeeds every other merchant is answered 503.
   */
  async start(): Promise<void> {
    if (this.#options.source === undefined) return;
    this.#stopped = false;
    const loaded = await this.reload();
    this.#scheduleReload(loaded ? this.#options.refreshIntervalMs : this.#options.firstLoadRetryMs);
  }

  /** Stops the background reload and every row's scheduled certificate download. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const loaded of this.#merchants.values()) loaded.schedule?.stop();
  }

  /** The next background reload in `delayMs`; each schedules the one after once it settled, as its outcome decides. */
  #scheduleReload(delayMs: number): void {
    if (this.#stopped) return;
    const { refreshIntervalMs } = this.#options;
    this.#timer = setTimeout(() => {
      void this.reload().then(() => {
        this.#scheduleReload(this.#loadedOnce ? refreshIntervalMs : Math.min(delayMs * 2, refreshIntervalMs));
      });
    }, delayMs);
    this.#timer.unref();
  }

  /**
   * Reloads every merchant from the source; resolves true when the table was read, false when it could not be
   * (logged; the old set is kept). Never rejects.
   */
  reload(): Promise<boolean> {
    this.#reloading ??= this.#reloadOnce().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async #reloadOnce(): Promise<boolean> {
    const { source, logger, defaultMerchant, clock } = this.#options;
    if (source === undefined) return true;
    let records: MerchantRecord[];
    try {
      records = await source.load();
    } catch (error) {
      this.#lastReload = { at: clock(), ok: false };
      if (this.#loadedOnce) logger.warn({ err: error }, "merchant reload failed; keeping the previous merchants");
      else {
        logger.warn(
          { err: error, code: "MERCHANTS_UNAVAILABLE" },
          "merchant table not loaded; merchants other than the environment's are answered 503 until it is",
        );
      }
      return false;
    }
    const next = new Map<string, Loaded>();
    // Whole rows refused (skipped, or served with the keys they had): counted with the keys refused in `#refusals`.
    const refusedRows: MerchantRefusalCode[] = [];
    for (const record of records) {
      if (record.mchid === defaultMerchant.mchid) continue;
      // The rule WECHATPAY_MCHID is held to, and `lookup`'s: the mchid is part of every notification id (Redis keys,
      // job ids), whose length the workers bound — with a 90-character mchid every notification was acknowledged, then
      // dead-lettered JOB_INVALID. Nothing checks the column, so the row is skipped (404, WeChat resends), logged at
      // every reload until it is fixed.
      if (!MCHID_PATTERN.test(record.mchid)) {
        logger.error(
          { mchid: record.mchid, code: "MERCHANT_MCHID_INVALID" },
          "merchant row's mchid is not a merchant number (6-32 digits); merchant skipped",
        );
        refusedRows.push("MERCHANT_MCHID_INVALID");
        continue;
      }
      const fingerprint = fingerprintOf(record);
      const previous = this.#merchants.get(record.mchid);
      if (previous?.fingerprint === fingerprint) {
        next.set(record.mchid, previous);
        continue;
      }
      try {
        const built = buildMerchant(record, logger, this.#options.download, previous);
        next.set(record.mchid, { ...built, fingerprint, schedule: scheduleOf(built.merchant, this.#options.download) });
      } catch (error) {
        // One merchant's broken key material must not take the others down. A merchant that worked keeps the
        // keys it had (a row with no key at all is an edit caught halfway: a merchant is stopped with `enabled`);
        // a new one is skipped (404, WeChat resends). The previous fingerprint stays, so every reload tries again.
        if (previous) next.set(record.mchid, { ...previous, kept: keyNamesOf(previous.merchant), refused: [] });
        refusedRows.push("MERCHANT_UNUSABLE");
        logger.error(
          { err: error, mchid: record.mchid, code: "MERCHANT_UNUSABLE" },
          previous
            ? "merchant key material unusable; keeping the previous keys"
            : "merchant key material unusable; merchant skipped",
        );
      }
    }
    this.#serve(next);
    this.#refusals = tally([...refusedRows, ...[...next.values()].flatMap((loaded) => loaded.refused)]);
    this.#lastReload = { at: clock(), ok: true };
    if (!this.#loadedOnce) {
      this.#loadedOnce = true;
      logger.info({ merchants: this.size }, "merchant table loaded");
    }
    return true;
  }

  /**
   * Serves `next` from now on. The schedules of merchants no longer served (dropped, or rebuilt from an edited row)
   * stop, so a rebuilt merchant downloads on one timer, not on one per edit; the others start (their first download
   * at once: a download-only merchant has no key before it) unless the registry was stopped. A merchant kept as it
   * was keeps its running schedule.
   */
  #serve(next: Map<string, Loaded>): void {
    const schedules = new Set<CertificateSchedule>();
    for (const loaded of next.values()) if (loaded.schedule) schedules.add(loaded.schedule);
    for (const loaded of this.#merchants.values()) {
      if (loaded.schedule && !schedules.has(loaded.schedule)) loaded.schedule.stop();
    }
    this.#merchants = next;
    if (this.#stopped) return;
    // Never rejects; failures are the refresher observer's to log and count.
    for (const schedule of schedules) void schedule.start();
  }
}

/**
 * When the last of `keys`' platform certificates stops verifying — the latest `notAfter` plus the minute of clock
 * difference verification allows (CERTIFICATE_VALIDITY_TOLERANCE_MS, `certificateExpired`), so the warning and the
 * refusals agree to the second — undefined without any: past it the merchant verifies with its public key alone, if it
 * has one. A successor WeChat published ahead of a rotation counts, so a rotation in progress is not a warning.
 */
export function lastCertificateExpiry(keys: KeyStore): Date | undefined {
  let last: Date | undefined;
  for (const entry of keys.describe()) {
    if (entry.kind === "certificate" && entry.notAfter !== undefined && (last === undefined || entry.notAfter > last)) {
      last = entry.notAfter;
    }
  }
  return last === undefined ? undefined : new Date(last.getTime() + CERTIFICATE_VALIDITY_TOLERANCE_MS);
}

/** How many times each code occurs in `codes`. */
function tally(codes: readonly MerchantRefusalCode[]): Partial<Record<MerchantRefusalCode, number>> {
  const counts: Partial<Record<MerchantRefusalCode, number>> = {};
  for (const code of codes) counts[code] = (counts[code] ?? 0) + 1;
  return counts;
}

/** The scheduled download of a merchant built with a certificate refresher. */
function scheduleOf(
  merchant: MerchantKeys,
  download: RegistryDownloadOptions | undefined,
): CertificateSchedule | undefined {
  const refresher = merchant.certificateRefresher;
  return refresher === undefined || download === undefined
    ? undefined
    : new CertificateSchedule(refresher, download.schedule);
}

/** Every key `merchant` verifies with, by name (as `Loaded.kept` counts them). */
function keyNamesOf(merchant: MerchantKeys): string[] {
  const names = merchant.keys.describe().map((entry) => entry.id);
  if (merchant.apiV2Key !== undefined) names.push("apiV2Key");
  return names;
}

function fingerprintOf(record: MerchantRecord): string {
  const hash = createHash("sha256");
  const download = record.download;
  for (const part of [
    record.appid,
    record.apiV2Key ?? "",
    record.apiV2KeyPrevious ?? "",
    record.publicKeyId ?? "",
    record.publicKeyPem ?? "",
    download?.apiSerialNo ?? "",
    download?.apiPrivateKeyPem ?? "",
    download?.apiV3Key ?? "",
    download?.apiV3KeyPrevious ?? "",
  ]) {
    hash.update(part).update("\0");
  }
  // The serial and validity columns too: an edit of them alone (a misfiled serial corrected, a retirement recorded)
  // must rebuild the merchant.
  for (const cert of [...record.certificates].sort((a, b) => a.serial.localeCompare(b.serial))) {
    hash.update(cert.serial).update("\0").update(cert.pem).update("\0");
    // getTime, not toISOString: an Invalid Date (PostgreSQL's infinity) is NaN here, where toISOString throws.
    hash.update(`${cert.notBefore?.getTime() ?? ""}\0${cert.notAfter?.getTime() ?? ""}\0`);
  }
  return hash.digest("hex");
}

/**
 * A merchant's keys from its row. Each key is loaded on its own, so one unusable key (bad PEM, key under 2048 bits)
 * never costs the merchant the others, and each falls back on its own: a key that does not load, or a public key
 * with only one of its two columns, keeps what `previous` had loaded in its place (the public key; the certificate
 * with the same serial) — an edit that went wrong must not stop notifications that verified a moment ago, whatever
 * else the row holds (an APIv2 key, other certificates). Logged with code MERCHANT_KEY_UNUSABLE (or
 * MERCHANT_KEY_INCOMPLETE; CERTIFICATE_SERIAL_MISMATCH for a certificate row whose serial column is not its PEM's,
 * naming both), named in `kept`, and its code in `refused`. Without one it is left out (logged the same way). A key whose
 * columns are cleared (or whose PlatformCertificate row is deleted) is removed. Throws only when the row yields no
 * key at all: no APIv3 verification key, no certificate download and no APIv2 key.
 */
function buildMerchant(
  record: MerchantRecord,
  logger: Logger,
  download: RegistryDownloadOptions | undefined,
  previousLoaded: Loaded | undefined,
): Omit<Loaded, "fingerprint" | "schedule"> {
  const previous = previousLoaded?.merchant;
  const keys = new KeyStore();
  const kept: string[] = [];
  const refused: MerchantRefusalCode[] = [];
  // A key this build could not take from the row: logged, and what `previous` had in its place (`restored`, now back
  // in `keys`) counted as kept.
  const fallBack = (
    problem: string,
    fields: { code: MerchantRefusalCode } & Record<string, unknown>,
    restored: readonly string[],
  ) => {
    kept.push(...restored);
    refused.push(fields.code);
    logger.error(
      { mchid: record.mchid, ...fields, kept: restored },
      `${problem}; ${restored.length > 0 ? "keeping the key loaded before" : "left out"}`,
    );
  };
  const unusable = (key: string, error: unknown, restored: readonly string[]) =>
    fallBack("merchant key unusable", { err: error, key, code: "MERCHANT_KEY_UNUSABLE" }, restored);
  // A row holds one public key, so whatever public key `previous` had is the one this row's value replaces.
  const restorePublicKey = (): string[] => {
    const restored: string[] = [];
    for (const entry of previous?.keys.describe() ?? []) {
      const key = entry.kind === "publicKey" ? previous?.keys.publicKey(entry.id) : undefined;
      if (key === undefined) continue;
      keys.addPublicKey(entry.id, key);
      restored.push(entry.id);
    }
    return restored;
  };
  const { publicKeyId, publicKeyPem } = record;
  // A rebuild (any column edited) keeps the key objects of keys that did not change: RsaVerifyPool's threads keep every
  // key object they are sent, for as long as they run, so a new copy per edit would be one more key held by each.
  if (publicKeyId && publicKeyPem) {
    try {
      const loaded = loadPublicKey(publicKeyPem);
      const before = previous?.keys.publicKey(publicKeyId);
      keys.addPublicKey(publicKeyId, before?.equals(loaded) ? before : loaded);
    } catch (error) {
      unusable(publicKeyId, error, restorePublicKey());
    }
  } else if (publicKeyId || publicKeyPem) {
    // A removal clears both columns: one of them alone is an edit caught halfway or a mistake, not a key.
    fallBack(
      "merchant row has only one of publicKeyId and publicKeyPem",
      { missing: publicKeyId ? "publicKeyPem" : "publicKeyId", code: "MERCHANT_KEY_INCOMPLETE" },
      restorePublicKey(),
    );
  }
  for (const cert of record.certificates) {
    // PostgreSQL's timestamps take 'infinity' and '-infinity', which Prisma reads as an Invalid Date: no bound this
    // build can apply (-infinity as notAfter would retire the certificate, as notBefore mean nothing), so the row's
    // certificate is refused as one that does not load is — its own key, never the reload of the table.
    const badBound = [cert.notBefore, cert.notAfter].some(
      (bound) => bound !== undefined && Number.isNaN(bound.getTime()),
    );
    if (badBound) {
      const before = previous?.keys.certificate(cert.serial);
      if (before !== undefined) keys.addCertificate(before);
      unusable(
        cert.serial,
        new Error("PlatformCertificate row's notBefore or notAfter is not a date (PostgreSQL infinity?)"),
        before === undefined ? [] : [before.serial],
      );
      continue;
    }
    let loaded: LoadedCertificate;
    try {
      loaded = loadCertificate(cert.pem);
    } catch (error) {
      const before = previous?.keys.certificate(cert.serial);
      if (before !== undefined) keys.addCertificate(before);
      unusable(cert.serial, error, before === undefined ? [] : [before.serial]);
      continue;
    }
    // The key is filed under the PEM's serial; a column naming another certificate is a misfiled row (the wrong PEM
    // pasted, or the wrong serial typed). Trusting either would verify under a key the row does not say, or leave
    // the serial it names unknown with only 401s to tell, so the row is refused as a key that does not load is.
    if (!sameCertificateSerial(cert.serial, loaded.serial)) {
      const before = previous?.keys.certificate(cert.serial);
      if (before !== undefined) keys.addCertificate(before);
      fallBack(
        "PlatformCertificate row's serial is not the serial of the certificate in its pem",
        { serial: cert.serial, pemSerial: loaded.serial, code: "CERTIFICATE_SERIAL_MISMATCH" },
        before === undefined ? [] : [before.serial],
      );
      continue;
    }
    const before = previous?.keys.certificate(loaded.serial);
    keys.addCertificate(
      narrowValidity(before?.pem === loaded.pem ? { ...loaded, publicKey: before.publicKey } : loaded, {
        ...(cert.notBefore === undefined ? {} : { notBefore: cert.notBefore }),
        ...(cert.notAfter === undefined ? {} : { notAfter: cert.notAfter }),
      }),
    );
  }
  // What the merchant's downloads brought: its refresher's, or those an earlier build already held as fixed ones.
  const downloaded = previous?.certificateRefresher?.downloaded() ?? previousLoaded?.downloads ?? [];
  // Download turned off or its settings unusable: what it had downloaded stays, as fixed certificates (they still
  // verify until they expire), through every later edit too, so an edit cannot stop the merchant's notifications.
  // Settings that are there but unusable make them kept keys: served from this process's memory alone (a restarted
  // one cannot download them), like any other key an edit that does not load leaves in place.
  const restorable = downloaded.filter((cert) => !keys.has(cert.serial));
  const { refresher, refused: downloadRefused } = downloaderOf(
    record,
    keys,
    download,
    logger,
    downloaded,
    restorable.map((cert) => cert.serial),
  );
  if (refresher === undefined) {
    for (const cert of restorable) keys.addCertificate(cert);
    if (downloadRefused !== undefined) {
      kept.push(...restorable.map((cert) => cert.serial));
      refused.push(downloadRefused);
    }
  }
  if (keys.describe().length === 0 && !record.apiV2Key && refresher === undefined) {
    throw new Error("merchant has neither a public key, a platform certificate, certificate download nor an APIv2 key");
  }
  return {
    merchant: {
      mchid: record.mchid,
      appid: record.appid,
      keys,
      apiV2Key: record.apiV2Key ?? undefined,
      apiV2KeyPrevious: (record.apiV2Key && record.apiV2KeyPrevious) || undefined,
      source: "database",
      ...(refresher === undefined ? {} : { certificateRefresher: refresher }),
    },
    kept,
    refused,
    downloads: refresher === undefined ? downloaded : [],
  };
}

/**
 * The row's certificate downloader; its downloads run on the merchant's schedule (started by the registry once the
 * merchant is served: the first at once) and on unknown serials, and their failures reach the observer, which logs
 * and counts them. An unusable private key, or only one of the two columns, leaves the merchant without download
 * (`refused`: the code it is logged with), logged like any other unusable key of the row, with `kept` naming the
 * certificates downloaded before that are served in the download's place.
 */
function downloaderOf(
  record: MerchantRecord,
  keys: KeyStore,
  download: RegistryDownloadOptions | undefined,
  logger: Logger,
  inherited: readonly LoadedCertificate[],
  kept: readonly string[],
): { refresher: CertificateRefresher | undefined; refused: MerchantRefusalCode | undefined } {
  if (record.download === null) return { refresher: undefined, refused: undefined };
  const { apiSerialNo, apiPrivateKeyPem, apiV3Key, apiV3KeyPrevious } = record.download;
  const leftOut = kept.length > 0 ? "keeping the certificates downloaded before" : "left out";
  if (!apiSerialNo || !apiPrivateKeyPem) {
    logger.error(
      {
        mchid: record.mchid,
        missing: apiSerialNo ? "apiPrivateKeyPem" : "apiSerialNo",
        code: "MERCHANT_KEY_INCOMPLETE",
        kept,
      },
      `merchant row has only one of apiSerialNo and apiPrivateKeyPem; certificate download left out, ${leftOut}`,
    );
    return { refresher: undefined, refused: "MERCHANT_KEY_INCOMPLETE" };
  }
  if (download === undefined) {
    logger.warn({ mchid: record.mchid }, "merchant row has download credentials but this registry does not download");
    return { refresher: undefined, refused: undefined };
  }
  let refresher: CertificateRefresher;
  try {
    refresher = certificateRefresher(
      {
        mchid: record.mchid,
        baseUrl: download.baseUrl,
        merchantSerialNo: apiSerialNo,
        merchantPrivateKeyPem: apiPrivateKeyPem,
        apiV3Key: Buffer.from(apiV3Key, "utf8"),
        previousApiV3Key: apiV3KeyPrevious === null ? undefined : Buffer.from(apiV3KeyPrevious, "utf8"),
        toleranceSeconds: download.toleranceSeconds,
      },
      keys,
      { ...download, inherited },
    );
  } catch (error) {
    logger.error(
      { err: error, mchid: record.mchid, key: "apiPrivateKeyPem", code: "MERCHANT_KEY_UNUSABLE", kept },
      `merchant key unusable; certificate download left out, ${leftOut}`,
    );
    return { refresher: undefined, refused: "MERCHANT_KEY_UNUSABLE" };
  }
  return { refresher, refused: undefined };
}
