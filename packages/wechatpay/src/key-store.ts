import type { KeyObject } from "node:crypto";
import { WechatPayError } from "./errors.ts";
import { type LoadedCertificate, loadCertificate, loadPublicKey } from "./keys.ts";

/** Anything that maps a `Wechatpay-Serial` value to a verification key (KeyStore, test doubles). */
export interface KeyResolver {
  resolve(serial: string, now: Date): KeyObject;
}

/** Same, but allowed to fetch (e.g. `CertificateRefresher`). */
export interface AsyncKeyResolver {
  resolve(serial: string, now: Date): KeyObject | Promise<KeyObject>;
}

/** Prefix of WeChat Pay public-key ids ("微信支付公钥ID"), e.g. `PUB_KEY_ID_0000000000000024101100397200000006`. */
export const PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_";

/**
 * Whether a `Wechatpay-Serial` names a WeChat Pay public key rather than a platform certificate (whose serials are
 * hex). Such a serial is never in a certificate list, so one the merchant does not hold must not cause a download
 * (`CertificateRefresher.resolveOrRefresh`, the ingress's lazy download): it could only cost a request to WeChat,
 * and let anyone spend the minute's download that a certificate rotation needs.
 */
export function isPublicKeyId(serial: string): boolean {
  return serial.startsWith(PUBLIC_KEY_ID_PREFIX);
}

/**
 * A public-key id as it must be held: the prefix, then 1–64 ASCII letters, digits, '_' or '-' (WeChat's are digits).
 * The id is matched exactly against `Wechatpay-Serial`, so one pasted with whitespace or other junk around it would
 * load and never match (every notification 401 SERIAL_UNKNOWN); it is refused instead. WECHATPAY_PUBLIC_KEY_ID
 * (@wpn/config) has the same rule.
 */
const PUBLIC_KEY_ID = /^PUB_KEY_ID_[0-9A-Za-z_-]{1,64}$/;

/**
 * Certificate serials arrive in several spellings for the same number: Node prints upper-case hex,
 * Java's `BigInteger.toString(16)` lower-case without leading zeros. We index by upper-case hex with
 * leading zeros stripped so all of them meet. (Public-key ids are opaque strings and are not normalised.)
 */
function serialKey(serial: string): string {
  const upper = serial.trim().toUpperCase();
  const stripped = upper.replace(/^0+/, "");
  return stripped === "" ? "0" : stripped;
}

/** Whether two certificate serials name the same number, in whichever spelling (see serialKey). */
export function sameCertificateSerial(a: string, b: string): boolean {
  return serialKey(a) === serialKey(b);
}

/**
 * Clock difference allowed either side of a platform certificate's validity, ms: a notification WeChat signed just
 * before a certificate's retirement (by its clock) arrives a little after it by ours — a few seconds in flight, and
 * however far the two clocks are apart. One minute covers an NTP-synced host many times over, and a retired key
 * gains at most that minute (validity is judged at the arrival time, never at the `Wechatpay-Timestamp` the sender
 * wrote, which may be 300 s off).
 */
export const CERTIFICATE_VALIDITY_TOLERANCE_MS = 60_000;

/** Whether `cert` is past its notAfter at `at`, beyond the tolerance: retired, refused by `KeyStore.resolve`. */
export function certificateExpired(cert: { notAfter: Date }, at: Date): boolean {
  return at.getTime() > cert.notAfter.getTime() + CERTIFICATE_VALIDITY_TOLERANCE_MS;
}

/** Whether `cert` is before its notBefore at `at`, beyond the tolerance: refused by `KeyStore.resolve`. */
export function certificateNotYetValid(cert: { notBefore: Date }, at: Date): boolean {
  return at.getTime() < cert.notBefore.getTime() - CERTIFICATE_VALIDITY_TOLERANCE_MS;
}

/**
 * Whether `cert` verifies at `at`: within its validity, the tolerance allowed either side. The one rule for
 * `KeyStore.resolve` and for whoever reports which certificates can verify now (the ingress's /health/ready), so a
 * process is never reported without a key while it still verifies, nor the other way round.
 */
export function certificateValidAt(cert: { notBefore: Date; notAfter: Date }, at: Date): boolean {
  return !certificateExpired(cert, at) && !certificateNotYetValid(cert, at);
}

export interface KeyStoreEntry {
  kind: "publicKey" | "certificate";
  id: string;
  notBefore?: Date;
  notAfter?: Date;
}

/**
 * Holds, at the same time, the WeChat Pay public key(s) and any number of platform certificates.
 *
 * Why both: while WeChat switches a merchant from platform certificates to the public key, notifications
 * are signed with either key, chosen at random per delivery, for 7 days (protocol notes §1.4). Lookup
 * follows the official SDKs: an exact public-key id first, otherwise the certificate map.
 */
export class KeyStore implements KeyResolver {
  readonly #publicKeys = new Map<string, KeyObject>();
  readonly #certificates = new Map<string, LoadedCertificate>();

  /** `id` must be the `PUB_KEY_ID_…` shown in the merchant platform; `key` a KeyObject or SPKI PEM. */
  addPublicKey(id: string, key: KeyObject | string): void {
    if (typeof id !== "string" || !PUBLIC_KEY_ID.test(id)) {
      throw new WechatPayError(
        "KEY_INVALID",
        `public key id must look like ${PUBLIC_KEY_ID_PREFIX}<digits> (ASCII letters, digits, '_', '-'; no spaces), got ${JSON.stringify(id)} (certificate serials go to addCertificate)`,
      );
    }
    const keyObject = typeof key === "string" ? loadPublicKey(key) : key;
    if (keyObject.type !== "public") {
      throw new WechatPayError(
        "KEY_INVALID",
        `public key ${id}: expected a public KeyObject, got a ${keyObject.type} key`,
      );
    }
    this.#publicKeys.set(id, keyObject);
  }

  /** The public key with this id (exact match), if held. */
  publicKey(id: string): KeyObject | undefined {
    return this.#publicKeys.get(id);
  }

  /** Adds (or replaces) a platform certificate; returns its serial (upper-case hex). */
  addCertificate(cert: string | LoadedCertificate): string {
    const loaded = typeof cert === "string" ? loadCertificate(cert) : cert;
    this.#certificates.set(serialKey(loaded.serial), loaded);
    return loaded.serial;
  }

  /** The platform certificate with this serial (any spelling), if held. */
  certificate(serial: string): LoadedCertificate | undefined {
    return this.#certificates.get(serialKey(serial));
  }

  /** Removes a platform certificate (e.g. one WeChat no longer lists); answers whether it was there. */
  removeCertificate(serial: string): boolean {
    return this.#certificates.delete(serialKey(serial));
  }

  /**
   * The key for `serial` at time `now` (the verification time: when the notification arrived). A certificate's
   * validity — its own, narrowed by WeChat's listing for a downloaded one (`downloadCertificates`) — is judged with
   * CERTIFICATE_VALIDITY_TOLERANCE_MS either side. Public keys have no validity.
   * Throws SERIAL_UNKNOWN, PUBLIC_KEY_NOT_CONFIGURED (a `PUB_KEY_ID_…` serial, and the store holds no public key at
   * all), CERTIFICATE_EXPIRED (now > notAfter + tolerance) or CERTIFICATE_NOT_YET_VALID (now < notBefore − tolerance).
   */
  resolve(serial: string, now: Date): KeyObject {
    const publicKey = this.#publicKeys.get(serial);
    if (publicKey) return publicKey;
    const cert = this.#certificates.get(serialKey(serial));
    if (!cert && this.#publicKeys.size === 0 && isPublicKeyId(serial)) {
      // Not just an unknown serial: a merchant of platform certificates that WeChat has begun to move to its public
      // key (it signs with either during the switch, then with the public key alone). Its own code, so that the
      // operator is told to configure the key rather than to look for a certificate.
      throw new WechatPayError(
        "PUBLIC_KEY_NOT_CONFIGURED",
        `Wechatpay-Serial "${serial}" names a WeChat Pay public key, and none is configured (platform certificates only)`,
      );
    }
    if (!cert) {
      throw new WechatPayError(
        "SERIAL_UNKNOWN",
        `no WeChat Pay public key or platform certificate with serial "${serial}"`,
      );
    }
    if (certificateExpired(cert, now)) {
      throw new WechatPayError(
        "CERTIFICATE_EXPIRED",
        `platform certificate ${cert.serial} expired at ${cert.notAfter.toISOString()}`,
      );
    }
    if (certificateNotYetValid(cert, now)) {
      throw new WechatPayError(
        "CERTIFICATE_NOT_YET_VALID",
        `platform certificate ${cert.serial} is valid from ${cert.notBefore.toISOString()}`,
      );
    }
    return cert.publicKey;
  }

  /** True when `serial` is a known public-key id or certificate serial (valid or not). */
  has(serial: string): boolean {
    return this.#publicKeys.has(serial) || this.#certificates.has(serialKey(serial));
  }

  /** For logs and the dashboard: what is loaded, never key material. */
  describe(): KeyStoreEntry[] {
    const entries: KeyStoreEntry[] = [];
    for (const id of this.#publicKeys.keys()) entries.push({ kind: "publicKey", id });
    for (const cert of this.#certificates.values()) {
      entries.push({ kind: "certificate", id: cert.serial, notBefore: cert.notBefore, notAfter: cert.notAfter });
    }
    return entries;
  }
}
