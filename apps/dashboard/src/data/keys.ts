import { createHash, createPublicKey, X509Certificate } from "node:crypto";
import {
  certificateExpired,
  certificateValidAt,
  type LoadedCertificate,
  loadCertificate,
  narrowValidity,
  sameCertificateSerial,
} from "@wpn/wechatpay";
import type { DashboardContext } from "../context.ts";

export interface CertificateStatus {
  serial: string;
  subject?: string;
  /**
   * Validity as the ingress trusts the certificate: a PlatformCertificate row's is the X.509 one narrowed by the
   * row's notBefore/notAfter (`narrowValidity`, as the ingress's registry loads it); a configured file's is its own.
   */
  notBefore: Date;
  notAfter: Date;
  /** Whole days until notAfter (truncated toward zero): 0 in the last day, -3 three full days after expiry. */
  daysLeft: number;
  /** Whether the ingress verifies with it now (`certificateValidAt`: a minute of clock difference either side). */
  validNow: boolean;
  /** Past notAfter beyond that minute (`certificateExpired`): refused for good. */
  expired: boolean;
  source: "config" | "database";
  /**
   * Set when the ingress refuses the row outright: the code it logs (MERCHANT_KEY_UNUSABLE, its PEM does not parse;
   * CERTIFICATE_SERIAL_MISMATCH). Such a certificate never verifies, so `validNow` and `expired` are false and its dates (the row's columns,
   * not a certificate's) are not shown.
   */
  refused?: string;
}

export interface MerchantKeyStatus {
  mchid: string;
  appid: string;
  source: "config" | "database";
  enabled: boolean;
  publicKeyId: string | null;
  /** SHA-256 of the public key (SPKI DER), hex, to compare with WeChat's merchant platform; null if none. */
  publicKeyFingerprint: string | null;
  publicKeyError?: string;
  /** Whether an APIv2 key is configured; the key itself is never read out. */
  apiV2Key: boolean;
  /**
   * The ingress downloads this merchant's platform certificates (WECHATPAY_MERCHANT_SERIAL_NO, or the row's
   * apiSerialNo) and keeps them in its memory, so they are not among `certificates` here. `intervalSeconds`: the
   * schedule, WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS, the same for the default merchant and every row's.
   */
  certificateDownload?: { merchantSerialNo: string; intervalSeconds: number };
  certificates: CertificateStatus[];
  certificateErrors: string[];
}

const DAY_MS = 86_400_000;

export function daysLeft(notAfter: Date, now: Date): number {
  return Math.trunc((notAfter.getTime() - now.getTime()) / DAY_MS);
}

/** The status fields judged from `validity` at `now`, by the functions the ingress's key store judges with. */
function judged(validity: { notBefore: Date; notAfter: Date }, now: Date) {
  return {
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    daysLeft: daysLeft(validity.notAfter, now),
    validNow: certificateValidAt(validity, now),
    expired: certificateExpired(validity, now),
  };
}

function fingerprint(pem: string): { value: string | null; error?: string } {
  try {
    const der = createPublicKey(pem).export({ type: "spki", format: "der" });
    return { value: createHash("sha256").update(der).digest("hex") };
  } catch (error) {
    return {
      value: null,
      error: `public key does not parse: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
}

/** A PEM block and its label, as @wpn/wechatpay's loaders read them. */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?\r?\n?-----END \1-----/g;

/**
 * Platform certificate PEMs as configured; a file may hold several certificates, as the ingress reads them
 * (`loadCertificates`). A block that is not a certificate is listed as an error, as the ingress refuses such a file
 * at start: the page must not show a file as fine that stops the ingress.
 */
export function certificatesFromPems(
  pems: readonly string[],
  now: Date,
): { certificates: CertificateStatus[]; errors: string[] } {
  const certificates: CertificateStatus[] = [];
  const errors: string[] = [];
  pems.forEach((pem, index) => {
    const file = `WECHATPAY_PLATFORM_CERT_PATHS file ${index + 1}`;
    const blocks = [...pem.matchAll(PEM_BLOCK)];
    if (blocks.length === 0) errors.push(`${file} holds no certificate`);
    for (const [position, [block, label]] of blocks.entries()) {
      if (label !== "CERTIFICATE") {
        errors.push(
          `${file}: PEM block ${position + 1} of ${blocks.length} is a "${label}", not a certificate (the ingress refuses this file)`,
        );
        continue;
      }
      try {
        const cert = new X509Certificate(block);
        certificates.push({
          serial: cert.serialNumber.toUpperCase(),
          subject: cert.subject.replaceAll("\n", ", "),
          ...judged({ notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) }, now),
          source: "config",
        });
      } catch (error) {
        errors.push(`${file}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  });
  return { certificates, errors };
}

interface CertificateRow {
  serial: string;
  pem: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * A PlatformCertificate row as the ingress's registry loads it: its PEM through `loadCertificate`, refused when that
 * fails or names another serial than the `serial` column (CERTIFICATE_SERIAL_MISMATCH in the ingress's log, while
 * this page would show the column's serial as if it were configured); else its validity narrowed by the row's
 * columns (`narrowValidity`). A refused row is `refused`, with its error beside it: neither valid nor expired.
 */
function rowCertificate(row: CertificateRow, now: Date): { status: CertificateStatus; errors: string[] } {
  const asRecorded = { serial: row.serial, source: "database" as const };
  let loaded: LoadedCertificate;
  try {
    loaded = loadCertificate(row.pem);
  } catch (error) {
    return {
      status: refusedStatus(asRecorded, row, now, "MERCHANT_KEY_UNUSABLE"),
      errors: [
        `certificate ${row.serial}: its PEM does not parse (${error instanceof Error ? error.message : String(error)})`,
      ],
    };
  }
  if (!sameCertificateSerial(loaded.serial, row.serial)) {
    return {
      status: refusedStatus(asRecorded, row, now, "CERTIFICATE_SERIAL_MISMATCH"),
      errors: [
        `certificate row ${row.serial} holds the certificate ${loaded.serial}: the ingress refuses it (CERTIFICATE_SERIAL_MISMATCH); correct the serial or the PEM`,
      ],
    };
  }
  const trusted = narrowValidity(loaded, { notBefore: row.notBefore, notAfter: row.notAfter });
  return { status: { ...asRecorded, ...judged(trusted, now) }, errors: [] };
}

/** A row the ingress refuses: never valid, never "expired" either (it was never in use); its dates kept, not shown. */
function refusedStatus(
  asRecorded: { serial: string; source: "database" },
  row: CertificateRow,
  now: Date,
  code: string,
): CertificateStatus {
  return { ...asRecorded, ...judged(row, now), validNow: false, expired: false, refused: code };
}

/**
 * Key status per merchant: the default merchant from the environment (public key file, platform certificate
 * files) and every row of the Merchant table with its downloaded PlatformCertificates. Secrets (APIv3/APIv2
 * keys) are never selected beyond "is one set".
 */
export async function loadKeyStatus(ctx: DashboardContext): Promise<MerchantKeyStatus[]> {
  const now = ctx.now();
  const { config } = ctx;
  const configured = certificatesFromPems(config.platformCertificatePems, now);
  const fp = config.publicKeyPem === undefined ? { value: null } : fingerprint(config.publicKeyPem);
  const defaultMerchant: MerchantKeyStatus = {
    mchid: config.WECHATPAY_MCHID,
    appid: config.WECHATPAY_APPID,
    source: "config",
    enabled: true,
    publicKeyId: config.WECHATPAY_PUBLIC_KEY_ID ?? null,
    publicKeyFingerprint: fp.value,
    publicKeyError: fp.error,
    apiV2Key: config.WECHATPAY_APIV2_KEY !== undefined,
    ...(config.WECHATPAY_MERCHANT_SERIAL_NO === undefined
      ? {}
      : {
          certificateDownload: {
            merchantSerialNo: config.WECHATPAY_MERCHANT_SERIAL_NO,
            intervalSeconds: config.WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS,
          },
        }),
    certificates: configured.certificates,
    certificateErrors: configured.errors,
  };
  const rows = await ctx.db.prisma.merchant.findMany({
    select: {
      mchid: true,
      appid: true,
      enabled: true,
      publicKeyId: true,
      publicKeyPem: true,
      apiV2Key: true,
      apiSerialNo: true,
      certificates: {
        select: { serial: true, pem: true, notBefore: true, notAfter: true },
        orderBy: { notAfter: "desc" },
      },
    },
    orderBy: { mchid: "asc" },
  });
  const fromDb = rows.map((row): MerchantKeyStatus => {
    const certificates = row.certificates.map((c) => rowCertificate(c, now));
    const rowFp = row.publicKeyPem ? fingerprint(row.publicKeyPem) : { value: null };
    return {
      mchid: row.mchid,
      appid: row.appid,
      source: "database",
      enabled: row.enabled,
      publicKeyId: row.publicKeyId,
      publicKeyFingerprint: rowFp.value,
      publicKeyError: rowFp.error,
      apiV2Key: row.apiV2Key !== null && row.apiV2Key !== "",
      ...(row.apiSerialNo
        ? {
            certificateDownload: {
              merchantSerialNo: row.apiSerialNo,
              intervalSeconds: config.WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS,
            },
          }
        : {}),
      certificates: certificates.map((c) => c.status),
      certificateErrors: certificates.flatMap((c) => c.errors),
    };
  });
  return [defaultMerchant, ...fromDb];
}
