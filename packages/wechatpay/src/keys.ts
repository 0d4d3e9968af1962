import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import { WechatPayError } from "./errors.ts";

/**
 * Key loading. Parse PEM once at start-up (or when a certificate is downloaded) and keep the `KeyObject`;
 * never hand PEM text to `crypto.verify` per request (it re-parses ASN.1 every time).
 *
 * Node's `createPublicKey` happily derives a public key from a certificate or a private key. We do not
 * allow that: configuration mistakes such as "merchant certificate given where the WeChat Pay public key is
 * expected" (a frequent one, see protocol notes §5.3) must fail loudly at start-up, so every loader checks
 * the PEM label first.
 */

/** Minimum RSA modulus size accepted, in bits. WeChat Pay APIv3 uses RSA-2048 everywhere. */
export const MIN_RSA_BITS = 2048;

export interface LoadedCertificate {
  /** X.509 serial number, upper-case hex, as Node prints it (compare case-insensitively). */
  serial: string;
  publicKey: KeyObject;
  /**
   * Validity: the certificate's own; for one `downloadCertificates` returns, narrowed to the `effective_time` and
   * `expire_time` WeChat lists (its retirement, moved forward before a switch). `pem` keeps the X.509 dates.
   */
  notBefore: Date;
  notAfter: Date;
  /** The certificate re-encoded as PEM (normalised armour, trailing newline). */
  pem: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)\r?\n?-----END \1-----/g;

/** `input` as text; KEY_INVALID when it is neither a string nor a Buffer. */
function pemText(input: string | Buffer, what: string): string {
  if (typeof input !== "string" && !Buffer.isBuffer(input)) {
    throw new WechatPayError("KEY_INVALID", `${what}: expected PEM text (string or Buffer)`);
  }
  return typeof input === "string" ? input : input.toString("utf8");
}

/** The PEM blocks of `text`, in order. */
function pemBlocks(text: string): RegExpExecArray[] {
  return [...text.matchAll(PEM_BLOCK)];
}

/**
 * Why `text` holds no PEM block, when it can tell: armour followed by a `\n` escape instead of a line break, as an env
 * file or a SQL string literal ('…\n…' without E'') leaves a PEM pasted into it (base64 has no backslash).
 */
function noBlockReason(text: string): string {
  return /-----BEGIN [A-Z0-9 ]+-----\\n/.test(text)
    ? ": its line breaks are written as \\n escapes; write them as real line breaks"
    : "";
}

/** Returns the single PEM block of `input`, or throws KEY_INVALID naming what was expected. */
function singlePemBlock(
  input: string | Buffer,
  expected: readonly string[],
  what: string,
): { label: string; pem: string } {
  const text = pemText(input, what);
  const blocks = pemBlocks(text);
  const block = blocks[0];
  if (blocks.length !== 1 || block === undefined) {
    const reason = blocks.length === 0 ? noBlockReason(text) : "";
    throw new WechatPayError(
      "KEY_INVALID",
      `${what}: expected exactly one PEM block (${expected.join(" or ")}), found ${blocks.length}${reason}`,
    );
  }
  const label = block[1] as string; // group 1 always participates in a match
  if (!expected.includes(label)) {
    throw new WechatPayError("KEY_INVALID", `${what}: expected ${expected.join(" or ")}, got a "${label}" PEM block`);
  }
  return { label, pem: block[0] };
}

function requireRsa(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== "rsa") {
    throw new WechatPayError("KEY_INVALID", `${what}: expected an RSA key, got ${String(key.asymmetricKeyType)}`);
  }
  // Node always fills asymmetricKeyDetails.modulusLength (bits) for RSA keys.
  const bits = (key.asymmetricKeyDetails as { modulusLength: number }).modulusLength;
  if (bits < MIN_RSA_BITS) {
    throw new WechatPayError("KEY_INVALID", `${what}: RSA key has ${bits} bits, at least ${MIN_RSA_BITS} required`);
  }
  return key;
}

/** SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY` PEM, e.g. the WeChat Pay public key (`PUB_KEY_ID_…`). */
export function loadPublicKey(pem: string | Buffer): KeyObject {
  const what = "public key";
  const { label, pem: block } = singlePemBlock(pem, ["PUBLIC KEY", "RSA PUBLIC KEY"], what);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: block, format: "pem", ...(label === "RSA PUBLIC KEY" ? { type: "pkcs1" } : {}) });
  } catch (cause) {
    throw new WechatPayError("KEY_INVALID", `${what}: PEM block could not be parsed`, { cause });
  }
  return requireRsa(key, what);
}

/** PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY` PEM (unencrypted), e.g. the merchant API key. */
export function loadPrivateKey(pem: string | Buffer): KeyObject {
  const what = "private key";
  const { pem: block } = singlePemBlock(pem, ["PRIVATE KEY", "RSA PRIVATE KEY"], what);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: block, format: "pem" });
  } catch (cause) {
    throw new WechatPayError("KEY_INVALID", `${what}: PEM block could not be parsed`, { cause });
  }
  return requireRsa(key, what);
}

/**
 * Parses an OpenSSL date string as printed by `X509Certificate#validFrom/validTo`
 * ("Apr 27 08:55:23 2021 GMT"). Node 20 has no `validFromDate`, so we parse the text and insist on a
 * valid result rather than trusting `new Date()` blindly.
 */
function parseX509Date(text: string, field: string): Date {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw new WechatPayError("KEY_INVALID", `certificate: unreadable ${field} "${text}"`);
  }
  return date;
}

/** X.509 `CERTIFICATE` PEM, e.g. a platform certificate from `GET /v3/certificates`. */
export function loadCertificate(pem: string | Buffer): LoadedCertificate {
  const what = "certificate";
  const { pem: block } = singlePemBlock(pem, ["CERTIFICATE"], what);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(block);
  } catch (cause) {
    throw new WechatPayError("KEY_INVALID", `${what}: PEM block could not be parsed`, { cause });
  }
  return {
    serial: x509.serialNumber.toUpperCase(),
    publicKey: requireRsa(x509.publicKey, what),
    notBefore: parseX509Date(x509.validFrom, "notBefore"),
    notAfter: parseX509Date(x509.validTo, "notAfter"),
    pem: x509.toString(),
  };
}

/**
 * Every certificate of a PEM file, in order: a file of platform certificates (WECHATPAY_PLATFORM_CERT_PATHS) may hold
 * several — WeChat's download gives one certificate per entry, and operators concatenate them (the current one and
 * its successor during a rotation). Each block must be a `CERTIFICATE` that `loadCertificate` takes; a file with
 * none, or with any other block (a private key pasted in), is KEY_INVALID naming the block: such a file is a
 * mistake to be told at start, not a certificate quietly left out.
 */
export function loadCertificates(pem: string | Buffer): LoadedCertificate[] {
  const text = pemText(pem, "certificates");
  const blocks = pemBlocks(text);
  if (blocks.length === 0) {
    throw new WechatPayError(
      "KEY_INVALID",
      `certificates: expected one or more PEM blocks (CERTIFICATE), found 0${noBlockReason(text)}`,
    );
  }
  return blocks.map((block, index) => {
    try {
      return loadCertificate(block[0]);
    } catch (error) {
      if (!(error instanceof WechatPayError)) throw error;
      throw new WechatPayError("KEY_INVALID", `PEM block ${index + 1} of ${blocks.length}: ${error.message}`, {
        cause: error,
      });
    }
  });
}

/**
 * `cert` trusted only within `bounds` too: its validity narrowed to them, never widened (a bound outside the
 * certificate's own leaves that side as it is; an absent one too). For the validity WeChat lists for a certificate
 * (`effective_time`, `expire_time`: it retires one by moving `expire_time` forward), wherever it was recorded.
 */
export function narrowValidity(
  cert: LoadedCertificate,
  bounds: { notBefore?: Date; notAfter?: Date },
): LoadedCertificate {
  const { notBefore, notAfter } = bounds;
  return {
    ...cert,
    notBefore: notBefore !== undefined && notBefore > cert.notBefore ? notBefore : cert.notBefore,
    notAfter: notAfter !== undefined && notAfter < cert.notAfter ? notAfter : cert.notAfter,
  };
}
