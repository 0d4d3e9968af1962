import { readFileSync } from "node:fs";
import type { z } from "zod";
import { type Environment, readEnvironment } from "./environment.ts";
import { ConfigError } from "./errors.ts";
import { refuseNearMisses } from "./names.ts";
import {
  apiV3VerificationProblem,
  DASHBOARD_SESSION_IDLE_DEFAULT_SECONDS,
  databaseUrlSchema,
  ENV_NAMES,
  type Env,
  envSchema,
  migrateSettingsSchema,
  pathList,
  queueSettingsSchema,
} from "./schema.ts";

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
  /**
   * The dashboard's idle limit, seconds: DASHBOARD_SESSION_IDLE_SECONDS, or when unset its default (15 minutes) cut
   * to DASHBOARD_SESSION_TTL_SECONDS — a deployment with a shorter lifetime, which the idle limit cannot exceed, keeps
   * starting without setting it.
   */
  readonly dashboardSessionIdleSeconds: number;
}

export interface LoadOptions {
  /**
   * The process verifies APIv3 signatures (the ingress, and `npm start`, which runs one): refuse a configuration
   * without any way to (apiV3VerificationProblem). Off for the workers and the dashboard, which never verify one.
   */
  readonly verifiesApiV3Signatures?: boolean;
}

/**
 * Parses the environment once into a typed `Config`. Throws `ConfigError` naming the first bad variable,
 * e.g. "WECHATPAY_APIV3_KEY must be 32 bytes".
 */
export function loadConfig(env: Environment, options: LoadOptions = {}): Config {
  const cleaned = withoutEmpty(env);
  const values = valuesOrThrow(envSchema.safeParse(cleaned), cleaned);
  const problem = options.verifiesApiV3Signatures ? apiV3VerificationProblem(values) : null;
  if (problem !== null) throw new ConfigError("WECHATPAY_PUBLIC_KEY_ID", problem);
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
    dashboardSessionIdleSeconds:
      values.DASHBOARD_SESSION_IDLE_SECONDS ??
      Math.min(DASHBOARD_SESSION_IDLE_DEFAULT_SECONDS, values.DASHBOARD_SESSION_TTL_SECONDS),
  };
}

/**
 * DATABASE_URL (or its default), validated as `loadConfig` validates it, for the scripts that need no merchant
 * settings (db:migrate, db:prune, `npm start` before it has written them). Throws `ConfigError`.
 */
export function loadDatabaseUrl(env: Environment): string {
  const cleaned = withoutEmpty(env);
  return valuesOrThrow(databaseUrlSchema.safeParse(cleaned.DATABASE_URL), cleaned, "DATABASE_URL");
}

/**
 * REDIS_URL and QUEUE_PREFIX (or their defaults), validated as `loadConfig` validates them, for db:prune, which reads
 * the workers' dead letters and needs no merchant settings. Throws `ConfigError`.
 */
export function loadQueueSettings(env: Environment): Pick<Env, "REDIS_URL" | "QUEUE_PREFIX"> {
  const cleaned = withoutEmpty(env);
  return valuesOrThrow(queueSettingsSchema.safeParse(cleaned), cleaned);
}

/** The settings of db:migrate: DATABASE_URL and the migration runner's (MIGRATE_*). */
export type MigrateSettings = Pick<Env, "DATABASE_URL" | "MIGRATE_LOCK_TIMEOUT_MS" | "MIGRATE_WAIT_SECONDS">;

/**
 * The settings db:migrate uses, validated as `loadConfig` validates them, without the merchant settings it does not
 * need. Throws `ConfigError` naming the first bad one.
 */
export function loadMigrateSettings(env: Environment): MigrateSettings {
  const cleaned = withoutEmpty(env);
  return valuesOrThrow(migrateSettingsSchema.safeParse(cleaned), cleaned);
}

/**
 * Empty strings count as unset, as in most dotenv tooling. A variable a letter or two off a setting's name is refused
 * first (refuseNearMisses), set or empty: it would be silently unused.
 */
function withoutEmpty(env: Environment): Record<string, string> {
  refuseNearMisses(Object.keys(env), ENV_NAMES);
  return Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ""),
  );
}

/** The parsed values, or a ConfigError naming the first issue's variable (`variable` when the path has none). */
function valuesOrThrow<T>(parsed: z.ZodSafeParseResult<T>, cleaned: Record<string, string>, variable?: string): T {
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const name = variable ?? String(issue?.path[0] ?? "environment");
  const what =
    issue?.code === "invalid_type" && cleaned[name] === undefined ? "is required" : (issue?.message ?? "is invalid");
  throw new ConfigError(name, `${name} ${what}`);
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
 * For an app's entry point: reads the environment (with `.env`: `readEnvironment` unless given), and on a bad setting
 * or an unreadable `.env` prints the one-line reason to stderr and exits with status 78 (EX_CONFIG) instead of a
 * stack trace.
 */
export function loadConfigOrExit(env?: Environment, options: LoadOptions = {}): Config {
  return orExit(() => loadConfig(env ?? readEnvironment(), options));
}

/** `readEnvironment` for a script's entry point: an unreadable `.env` is printed in one line, exit 78. */
export function readEnvironmentOrExit(cwd?: string): Environment {
  return orExit(() => readEnvironment(cwd));
}

function orExit<T>(read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`configuration error: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
}
