import { type KeyObject, sign } from "node:crypto";

/**
 * A minimal X.509 v3 certificate writer (DER), because node:crypto can parse certificates but not create
 * them, and the tests need platform certificates whose private keys they hold (several serials, expired and
 * not-yet-valid ones). Only what a certificate needs: serial, names (CN), validity, SPKI, sha256WithRSA.
 */

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

const sequence = (...parts: Buffer[]): Buffer => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]): Buffer => tlv(0x31, Buffer.concat(parts));

function integerFromHex(hex: string): Buffer {
  let bytes = Buffer.from(hex.length % 2 === 1 ? `0${hex}` : hex, "hex");
  // DER INTEGER is signed: a leading 1 bit needs a 0x00 in front to stay positive.
  if ((bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split(".").map(Number);
  const out: number[] = [first * 40 + second];
  for (const arc of rest) {
    const chunk: number[] = [];
    let n = arc;
    do {
      chunk.unshift(n & 0x7f);
      n = Math.floor(n / 128);
    } while (n > 0);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i] = (chunk[i] ?? 0) | 0x80;
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const compact = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  const year = date.getUTCFullYear();
  // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050 on.
  return year < 2050 ? tlv(0x17, Buffer.from(compact.slice(2), "ascii")) : tlv(0x18, Buffer.from(compact, "ascii"));
}

function name(commonName: string): Buffer {
  return sequence(set(sequence(oid("2.5.4.3"), tlv(0x0c, Buffer.from(commonName, "utf8")))));
}

const SHA256_WITH_RSA = sequence(oid("1.2.840.113549.1.1.11"), Buffer.from([0x05, 0x00]));

export interface CertificateSpec {
  serialHex: string;
  publicKey: KeyObject;
  /** Signs the certificate; the subject's own private key makes it self-signed. */
  issuerPrivateKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  commonName?: string;
  issuerName?: string;
}

export function createCertificatePem(spec: CertificateSpec): string {
  const subject = name(spec.commonName ?? "Tenpay.com sign (test)");
  const issuer = name(spec.issuerName ?? spec.commonName ?? "Tenpay.com sign (test)");
  const tbs = sequence(
    tlv(0xa0, integerFromHex("02")), // [0] EXPLICIT version v3
    integerFromHex(spec.serialHex),
    SHA256_WITH_RSA,
    issuer,
    sequence(time(spec.notBefore), time(spec.notAfter)),
    subject,
    spec.publicKey.export({ type: "spki", format: "der" }),
  );
  const signature = sign("sha256", tbs, spec.issuerPrivateKey);
  const der = sequence(tbs, SHA256_WITH_RSA, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}
