import { createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, randomInt } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { MCHID_PATTERN } from "@wpn/config";
import { loadCertificate, loadPrivateKey, loadPublicKey } from "@wpn/wechatpay";
import forge from "node-forge";

/**
 * Key material of a simulated WeChat Pay merchant account, split the way it is in reality:
 * - what WeChat Pay holds (the private keys it signs notifications and API responses with);
 * - what the merchant configures (public key + its `PUB_KEY_ID_…`, platform certificate, APIv3 and APIv2 keys).
 *
 * Two RSA key pairs are generated on purpose: the WeChat Pay public key and the platform certificate are
 * different keys in reality too, so a receiver that picks the wrong one for a `Wechatpay-Serial` fails the
 * `switch` scenario instead of passing by accident.
 */

/** File names inside a keys folder. */
export const KEY_FILES = {
  /** SPKI PEM — WECHATPAY_PUBLIC_KEY_PATH. */
  publicKey: "wechatpay_public_key.pem",
  /** PKCS#8 PEM — simulator only: signs notifications whose serial is the public key id. */
  publicKeyPrivate: "wechatpay_public_key.private.pem",
  /** X.509 PEM, self-signed — WECHATPAY_PLATFORM_CERT_PATHS. */
  certificate: "platform_cert.pem",
  /** PKCS#8 PEM — simulator only: signs notifications whose serial is the certificate serial. */
  certificatePrivate: "platform_cert.private.pem",
  /** KEY=VALUE lines: the ingress environment plus the simulator's own entries. */
  env: "env",
  /** JSON lines written by pay/refund/close/load and read by `serve`. */
  journal: "journal.jsonl",
} as const;

/** Where `keys` writes and the other commands look when `--keys` is not given (relative to the working directory). */
export const DEFAULT_KEYS_DIR = ".dev/keys";
/** Environment variable that overrides DEFAULT_KEYS_DIR. */
export const KEYS_DIR_ENV = "WECHATPAY_SIM_KEYS";

export const DEFAULT_MCHID = "1900000109";
export const DEFAULT_APPID = "wxd678efh567hg6787";

/** Validity of the generated platform certificate: like WeChat's, five years; valid from one day ago (clock skew). */
const CERT_VALID_DAYS = 5 * 365;

/** Environment entries the ingress reads (packages/config/src/schema.ts). */
export const INGRESS_ENV_NAMES = [
  "WECHATPAY_MCHID",
  "WECHATPAY_APPID",
  "WECHATPAY_APIV3_KEY",
  "WECHATPAY_APIV2_KEY",
  "WECHATPAY_PUBLIC_KEY_ID",
  "WECHATPAY_PUBLIC_KEY_PATH",
  "WECHATPAY_PLATFORM_CERT_PATHS",
] as const;

/** Entries only the simulator reads: the private halves and the certificate serial. */
export const SIM_ENV_NAMES = [
  "WECHATPAY_SIM_PUBLIC_KEY_PRIVATE_PATH",
  "WECHATPAY_SIM_PLATFORM_CERT_SERIAL",
  "WECHATPAY_SIM_PLATFORM_CERT_PRIVATE_PATH",
] as const;

export type IngressEnv = Record<(typeof INGRESS_ENV_NAMES)[number], string>;

export interface SimKeys {
  /** Absolute path of the folder. */
  dir: string;
  mchid: string;
  appid: string;
  /** 32 ASCII characters. */
  apiV3Key: string;
  /** 32 ASCII characters. */
  apiV2Key: string;
  publicKeyId: string;
  publicKeyPath: string;
  publicKey: KeyObject;
  /** Signs with serial = publicKeyId. */
  publicKeyPrivateKey: KeyObject;
  certificateSerial: string;
  certificatePath: string;
  certificatePem: string;
  certificateNotBefore: Date;
  certificateNotAfter: Date;
  /** Signs with serial = certificateSerial. */
  certificatePrivateKey: KeyObject;
  /** What the ingress needs, as environment variables. */
  env: IngressEnv;
}

export class SimKeysError extends Error {
  override readonly name = "SimKeysError";
}

export interface GenerateSimKeysOptions {
  mchid?: string;
  appid?: string;
  /** Clock for the certificate validity (tests). */
  now?: Date;
  /**
   * Two different RSA-2048 pairs to use instead of fresh ones (tests: generating them is most of the work here, and
   * the test suite makes its pairs once per run).
   */
  keyPairs?: Record<"publicKey" | "certificate", { privateKey: KeyObject; publicKey: KeyObject }>;
}

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function randomAlphanumeric(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHANUMERIC.charAt(randomInt(ALPHANUMERIC.length));
  return out;
}

function randomDigits(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += String(randomInt(10));
  return out;
}

/** 20 random bytes as upper-case hex, first byte 0x10..0x7F: positive, no leading zero (40 hex digits like WeChat's). */
function randomSerial(): string {
  const bytes = randomBytes(20);
  bytes[0] = 0x10 + ((bytes[0] ?? 0) % 0x70);
  return bytes.toString("hex").toUpperCase();
}

function selfSignedCertificate(publicKey: KeyObject, privateKey: KeyObject, serial: string, now: Date): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: "spki", format: "pem" }).toString());
  cert.serialNumber = serial.toLowerCase();
  cert.validity.notBefore = new Date(now.getTime() - 24 * 3600 * 1000);
  cert.validity.notAfter = new Date(now.getTime() + CERT_VALID_DAYS * 24 * 3600 * 1000);
  const attrs = [
    { shortName: "C", value: "CN" },
    { shortName: "O", value: "wechatpay-sim" },
    { shortName: "OU", value: "simulated WeChat Pay platform" },
    { shortName: "CN", value: "wechatpay-sim platform certificate" },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, nonRepudiation: true },
  ]);
  const forgeKey = forge.pki.privateKeyFromPem(privateKey.export({ type: "pkcs1", format: "pem" }).toString());
  cert.sign(forgeKey, forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

function quoteEnvValue(value: string): string {
  return /^[A-Za-z0-9_./:@,+=-]*$/.test(value) ? value : JSON.stringify(value);
}

/** `KEY=value` lines; values with unusual characters are double-quoted (understood by `node --env-file` and sh). */
export function formatEnv(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => `${k}=${quoteEnvValue(v)}`)
    .join("\n");
}

/** Parses what `formatEnv` writes (and plain dotenv files): comments, blank lines, optional double quotes. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match?.[1] || match[2] === undefined) throw new SimKeysError(`line ${index + 1} is not KEY=VALUE`);
    let value = match[2];
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        throw new SimKeysError(`line ${index + 1}: unterminated quoted value`);
      }
    } else if (value.startsWith("'") && value.endsWith("'") && value.length >= 2) {
      value = value.slice(1, -1);
    }
    env[match[1]] = value;
  }
  return env;
}

/**
 * Creates a fresh simulated WeChat Pay account in `dir` (created if missing; files in it are overwritten)
 * and returns it. Writes nothing outside `dir`, reads no environment, starts nothing. Synchronous, so both
 * `generateSimKeys(dir)` and `await generateSimKeys(dir)` work. Files holding private keys get mode 0600.
 */
export function generateSimKeys(dir: string, options: GenerateSimKeysOptions = {}): SimKeys {
  const mchid = options.mchid ?? DEFAULT_MCHID;
  const appid = options.appid ?? DEFAULT_APPID;
  if (!MCHID_PATTERN.test(mchid)) throw new SimKeysError(`mchid must be 6-32 digits, got "${mchid}"`);
  if (appid.length === 0 || appid.length > 64) throw new SimKeysError("appid must be 1-64 characters");
  const now = options.now ?? new Date();
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });

  const pub = options.keyPairs?.publicKey ?? generateKeyPairSync("rsa", { modulusLength: 2048 });
  const cert = options.keyPairs?.certificate ?? generateKeyPairSync("rsa", { modulusLength: 2048 });
  const serial = randomSerial();
  const certificatePem = selfSignedCertificate(cert.publicKey, cert.privateKey, serial, now);

  const paths = {
    publicKey: join(abs, KEY_FILES.publicKey),
    publicKeyPrivate: join(abs, KEY_FILES.publicKeyPrivate),
    certificate: join(abs, KEY_FILES.certificate),
    certificatePrivate: join(abs, KEY_FILES.certificatePrivate),
  };
  writeFileSync(paths.publicKey, pub.publicKey.export({ type: "spki", format: "pem" }));
  writeFileSync(paths.publicKeyPrivate, pub.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  writeFileSync(paths.certificate, certificatePem);
  writeFileSync(paths.certificatePrivate, cert.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });

  const env: IngressEnv = {
    WECHATPAY_MCHID: mchid,
    WECHATPAY_APPID: appid,
    WECHATPAY_APIV3_KEY: randomAlphanumeric(32),
    WECHATPAY_APIV2_KEY: randomAlphanumeric(32),
    WECHATPAY_PUBLIC_KEY_ID: `PUB_KEY_ID_01${randomDigits(32)}`,
    WECHATPAY_PUBLIC_KEY_PATH: paths.publicKey,
    WECHATPAY_PLATFORM_CERT_PATHS: paths.certificate,
  };
  const simEnv: Record<(typeof SIM_ENV_NAMES)[number], string> = {
    WECHATPAY_SIM_PUBLIC_KEY_PRIVATE_PATH: paths.publicKeyPrivate,
    WECHATPAY_SIM_PLATFORM_CERT_SERIAL: serial,
    WECHATPAY_SIM_PLATFORM_CERT_PRIVATE_PATH: paths.certificatePrivate,
  };
  const text = [
    `# Written by wechatpay-sim keys at ${now.toISOString()}.`,
    "# Environment for the ingress (what a merchant configures):",
    formatEnv(env),
    "# Simulator only (WeChat Pay's side; the ingress ignores these):",
    formatEnv(simEnv),
    "",
  ].join("\n");
  writeFileSync(join(abs, KEY_FILES.env), text, { mode: 0o600 });
  return loadSimKeys(abs);
}

/** True when `dir` holds a keys folder written by `generateSimKeys`. */
export function hasSimKeys(dir: string): boolean {
  return existsSync(join(resolve(dir), KEY_FILES.env));
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (cause) {
    throw new SimKeysError(`cannot read ${what} ${path}: ${(cause as Error).message}`);
  }
}

/**
 * Reads a keys folder. Key files are taken from the folder itself (so a moved folder still works), the
 * rest from `DIR/env`. Throws SimKeysError naming what is missing or wrong.
 */
export function loadSimKeys(dir: string): SimKeys {
  const abs = resolve(dir);
  const envPath = join(abs, KEY_FILES.env);
  if (!existsSync(envPath)) {
    throw new SimKeysError(
      `${abs} holds no simulator keys (no ${KEY_FILES.env} file); run \`wechatpay-sim keys --out ${dir}\``,
    );
  }
  let file: Record<string, string>;
  try {
    file = parseEnvFile(readFileSync(envPath, "utf8"));
  } catch (cause) {
    throw new SimKeysError(`${envPath}: ${(cause as Error).message}`);
  }
  const get = (name: string): string => {
    const value = file[name];
    if (value === undefined || value === "") throw new SimKeysError(`${envPath} lacks ${name}`);
    return value;
  };
  const publicKeyPath = join(abs, KEY_FILES.publicKey);
  const certificatePath = join(abs, KEY_FILES.certificate);
  try {
    const publicKey = loadPublicKey(readPem(publicKeyPath, "public key"));
    const publicKeyPrivateKey = loadPrivateKey(readPem(join(abs, KEY_FILES.publicKeyPrivate), "private key"));
    const certificatePem = readPem(certificatePath, "platform certificate");
    const certificate = loadCertificate(certificatePem);
    const certificatePrivateKey = loadPrivateKey(readPem(join(abs, KEY_FILES.certificatePrivate), "private key"));
    const serial = get("WECHATPAY_SIM_PLATFORM_CERT_SERIAL");
    if (certificate.serial.toUpperCase() !== serial.toUpperCase()) {
      throw new SimKeysError(`certificate serial ${certificate.serial} differs from ${serial} in ${envPath}`);
    }
    const samePublic = (a: KeyObject, b: KeyObject) =>
      a.export({ type: "spki", format: "der" }).equals(b.export({ type: "spki", format: "der" }));
    if (!samePublic(createPublicKey(publicKeyPrivateKey), publicKey)) {
      throw new SimKeysError(`${KEY_FILES.publicKeyPrivate} does not belong to ${KEY_FILES.publicKey}`);
    }
    if (!samePublic(createPublicKey(certificatePrivateKey), certificate.publicKey)) {
      throw new SimKeysError(`${KEY_FILES.certificatePrivate} does not belong to ${KEY_FILES.certificate}`);
    }
    const env: IngressEnv = {
      WECHATPAY_MCHID: get("WECHATPAY_MCHID"),
      WECHATPAY_APPID: get("WECHATPAY_APPID"),
      WECHATPAY_APIV3_KEY: get("WECHATPAY_APIV3_KEY"),
      WECHATPAY_APIV2_KEY: get("WECHATPAY_APIV2_KEY"),
      WECHATPAY_PUBLIC_KEY_ID: get("WECHATPAY_PUBLIC_KEY_ID"),
      WECHATPAY_PUBLIC_KEY_PATH: publicKeyPath,
      WECHATPAY_PLATFORM_CERT_PATHS: certificatePath,
    };
    for (const name of ["WECHATPAY_APIV3_KEY", "WECHATPAY_APIV2_KEY"] as const) {
      if (Buffer.byteLength(env[name], "utf8") !== 32) throw new SimKeysError(`${name} in ${envPath} must be 32 bytes`);
    }
    return {
      dir: abs,
      mchid: env.WECHATPAY_MCHID,
      appid: env.WECHATPAY_APPID,
      apiV3Key: env.WECHATPAY_APIV3_KEY,
      apiV2Key: env.WECHATPAY_APIV2_KEY,
      publicKeyId: env.WECHATPAY_PUBLIC_KEY_ID,
      publicKeyPath,
      publicKey,
      publicKeyPrivateKey,
      certificateSerial: certificate.serial,
      certificatePath,
      certificatePem,
      certificateNotBefore: certificate.notBefore,
      certificateNotAfter: certificate.notAfter,
      certificatePrivateKey,
      env,
    };
  } catch (cause) {
    if (cause instanceof SimKeysError) throw cause;
    throw new SimKeysError(`${abs}: ${(cause as Error).message}`);
  }
}
