import { execFileSync } from "node:child_process";
import { createPublicKey, type KeyObject, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificatePem } from "../../../../packages/wechatpay/test/support/x509.ts";

/**
 * A self-signed X.509 "platform certificate" for `privateKey`, made with the openssl CLI (no extra npm
 * dependency). Returns its serial as WeChat sends it in `Wechatpay-Serial` (40 upper-case hex digits).
 */
export function platformCertificate(privateKey: KeyObject): { serial: string; pem: string } {
  const dir = mkdtempSync(join(tmpdir(), "wpn-cert-"));
  const keyPath = join(dir, "key.pem");
  writeFileSync(keyPath, privateKey.export({ type: "pkcs8", format: "pem" }));
  const serialBytes = randomBytes(20);
  serialBytes[0] = 0x10 + ((serialBytes[0] ?? 0) % 0x70); // positive, no leading zero
  const serial = serialBytes.toString("hex").toUpperCase();
  const certPath = join(dir, "cert.pem");
  execFileSync("openssl", [
    "req",
    "-x509",
    "-new",
    "-key",
    keyPath,
    "-subj",
    "/C=CN/O=Tenpay.com/CN=Tenpay.com sign",
    "-days",
    "30",
    "-set_serial",
    `0x${serial}`,
    "-out",
    certPath,
  ]);
  return { serial, pem: readFileSync(certPath, "utf8") };
}

/**
 * A "platform certificate" for `privateKey` valid exactly from `notBefore` to `notAfter` (one already expired, one not
 * yet valid: the openssl CLI here, 3.0, cannot date a certificate), written by the DER writer of @wpn/wechatpay's tests.
 * Times are kept to the second, as X.509 holds them.
 */
export function datedPlatformCertificate(
  privateKey: KeyObject,
  validity: { notBefore: Date; notAfter: Date },
): { serial: string; pem: string } {
  const serialBytes = randomBytes(20);
  serialBytes[0] = 0x10 + ((serialBytes[0] ?? 0) % 0x70); // positive, no leading zero
  const serial = serialBytes.toString("hex").toUpperCase();
  const pem = createCertificatePem({
    serialHex: serial,
    publicKey: createPublicKey(privateKey),
    issuerPrivateKey: privateKey,
    commonName: "Tenpay.com sign",
    ...validity,
  });
  return { serial, pem };
}
