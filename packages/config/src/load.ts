import { readFileSync } from "node:fs";
import { type Environment, readEnvironment } from "./environment.ts";
import { ConfigError } from "./errors.ts";
import { type Env, envSchema, pathList } from "./schema.ts";

/** Validated settings plus the key material they point at, read from disk once. */
export interface Config extends Env {
  /** WECHATPAY_APIV3_KEY as the 32 bytes AES-256-GCM uses. */
  readonly apiV3KeyBytes: Buffer;
  /** WECHATPAY_APIV3_KEY_PREVIOUS, likewise; undefined when unset. */
  readonly previousApiV3KeyBytes: Buffer | undefined;
  /** Contents of WECHATPAY_PUBLIC_KEY_PATH (PEM); parse it once with @wpn/wechatpay's loadPublicKey. */
  readonly publicKeyPem: string | undefined;
  /** Contents of each WECHATPAY_PLATFORM_CERT_PATHS file (PEM). */
  readonly platformCertificatePems: readonly string[];
}

/**
 * Parses the environment once into a typed `Config`. Throws `ConfigError` naming the first bad variable,
 * e.g. "WECHATPAY_APIV3_KEY must be 32 bytes".
 */
export function loadConfig(env: Environment): Config {
  // Empty strings count as unset, as in most dotenv tooling.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue?.path[0] ?? "environment");
    const what =
      issue?.code === "invalid_type" && cleaned[variable] === undefined
        ? "is required"
        : (issue?.message ?? "is invalid");
    throw new ConfigError(variable, `${variable} ${what}`);
  }
  const values = parsed.data;
  return {
    ...values,
    apiV3KeyBytes: Buffer.from(values.WECHATPAY_APIV3_KEY, "utf8"),
    previousApiV3KeyBytes:
      values.WECHATPAY_APIV3_KEY_PREVIOUS === undefined
        ? undefined
        : Buffer.from(values.WECHATPAY_APIV3_KEY_PREVIOUS, "utf8"),
    publicKeyPem: readOptionalSetting("WECHATPAY_PUBLIC_KEY_PATH", values.WECHATPAY_PUBLIC_KEY_PATH),
    platformCertificatePems: pathList(values.WECHATPAY_PLATFORM_CERT_PATHS).map((p) =>
      readSetting("WECHATPAY_PLATFORM_CERT_PATHS", p),
    ),
  };
}

/**
 * Contents of WECHATPAY_MERCHANT_PRIVATE_KEY_PATH (PEM), undefined when certificate download is off. Read on
 * demand, by the ingress alone: the key signs merchant API calls, so the dashboard and the workers never load it
 * (nor need the file on their hosts). Throws ConfigError like `loadConfig`.
 */
export function readMerchantPrivateKeyPem(config: Config): string | undefined {
  return readOptionalSetting("WECHATPAY_MERCHANT_PRIVATE_KEY_PATH", config.WECHATPAY_MERCHANT_PRIVATE_KEY_PATH);
}

function readOptionalSetting(variable: string, path: string | undefined): string | undefined {
  return path === undefined ? undefined : readSetting(variable, path);
}

function readSetting(variable: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : "cannot be read";
    throw new ConfigError(variable, `${variable} file ${path} ${reason}`);
  }
}

/**
 * For an app's entry point: reads the environment (with `.env`), and on a bad setting prints the one-line
 * reason to stderr and exits with status 78 (EX_CONFIG) instead of a stack trace.
 */
export function loadConfigOrExit(env: Environment = readEnvironment()): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`configuration error: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
}
