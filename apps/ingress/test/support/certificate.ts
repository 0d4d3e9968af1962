import { execFileSync } from "node:child_process";
import { type KeyObject, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
