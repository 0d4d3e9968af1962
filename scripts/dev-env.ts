// The development `.env` of `npm start`: written whole on first run, completed when an engineer wrote a `.env`
// of their own first (another DATABASE_URL, ports) without configuring a merchant, left alone otherwise — and never
// written when the real environment configures the merchant (a server's systemd EnvironmentFile, a container's env).
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseDotenv, readEnvFile } from "@wpn/config";

/** A `.env` that sets this configures its merchant itself: `npm start` then adds nothing to it. */
export const MERCHANT_SETTING = "WECHATPAY_MCHID";

const FIRST_RUN_HEADER =
  "# Development settings written by `npm start` on first run. Keys come from the simulator: never use them in production.";
const ADDED_HEADER = `# Development settings added by \`npm start\` (this file set no ${MERCHANT_SETTING}), for the names it did not set. Keys come from the simulator: never use them in production.`;

/** The name a `NAME=value` line assigns; undefined for comments and blank lines. */
function assignedName(line: string): string | undefined {
  return /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line)?.[1];
}

export interface MergedEnv {
  /** The whole new file. */
  text: string;
  /** Names the development settings added, in file order. */
  added: string[];
}

/**
 * The `.env` `npm start` leaves, given the current one (undefined: none) and the development settings
 * (`NAME=value` lines, each with the comment lines above it). No file: the development settings. A file that sets
 * `WECHATPAY_MCHID`: undefined, it is left as it is. Any other file: kept byte for byte, followed by the development
 * lines of every name it does not set (with their comments), so its own lines win — a name it sets, even to an
 * empty value, is not added again.
 */
export function mergeDevelopmentEnv(existing: string | undefined, development: string): MergedEnv | undefined {
  const set = existing === undefined ? {} : parseDotenv(existing);
  return MERCHANT_SETTING in set ? undefined : withDevelopmentLines(existing, set, development);
}

/** `mergeDevelopmentEnv` for a file (or none) known to set no merchant; `set` is what it sets. */
function withDevelopmentLines(
  existing: string | undefined,
  set: Record<string, string>,
  development: string,
): MergedEnv {
  const lines: string[] = [];
  const added: string[] = [];
  let comments: string[] = [];
  for (const line of development.split("\n")) {
    const name = assignedName(line);
    if (name === undefined) {
      if (line.trim() !== "") comments.push(line);
      continue;
    }
    if (!(name in set)) {
      lines.push(...comments, line);
      added.push(name);
    }
    comments = [];
  }
  if (existing === undefined) return { text: `${FIRST_RUN_HEADER}\n${lines.join("\n")}\n`, added };
  const before = existing.trimEnd();
  return { text: `${before}${before === "" ? "" : "\n\n"}${ADDED_HEADER}\n${lines.join("\n")}\n`, added };
}

/** What `ensureDevelopmentEnv` did: the names it wrote, or who configures the merchant (then nothing was written). */
export type DevelopmentEnvOutcome = { added: string[] } | { configuredBy: "environment" | ".env"; mchid: string };

/**
 * Applies `mergeDevelopmentEnv` to `envFile`, calling `development` (which creates keys) only when something is to
 * be written. Nothing is written, and no key created, when `WECHATPAY_MCHID` is set — by `environment` (the process's
 * own, which the apps read over `.env`) or by the file: the merchant is configured, and a development line the
 * configuration does not set would be read beside it — the simulator's APIv2 key, its certificate as a trusted
 * signer, an admin login. A value set to empty counts as set, as in the file. The file ends with mode 0600 either way
 * it was written (it holds keys and the dashboard login's hash), also when it existed with another mode.
 */
export async function ensureDevelopmentEnv(
  envFile: string,
  development: () => Promise<string>,
  environment: NodeJS.ProcessEnv = process.env,
): Promise<DevelopmentEnvOutcome> {
  const fromEnvironment = environment[MERCHANT_SETTING];
  if (fromEnvironment !== undefined) return { configuredBy: "environment", mchid: fromEnvironment };
  // An unreadable .env is the apps' configuration error (one line, status 78), not Node's EISDIR stack trace.
  const existing = existsSync(envFile) ? readEnvFile(envFile) : undefined;
  const set = existing === undefined ? {} : parseDotenv(existing);
  const fromFile = set[MERCHANT_SETTING];
  if (fromFile !== undefined) return { configuredBy: ".env", mchid: fromFile };
  const merged = withDevelopmentLines(existing, set, await development());
  writeFileSync(envFile, merged.text, { mode: 0o600 });
  chmodSync(envFile, 0o600);
  return { added: merged.added };
}

/** A keys folder `npm start` would have to write over: it prints the message and stops instead. */
export class DevelopmentKeysError extends Error {
  override readonly name = "DevelopmentKeysError";
}

/** The development settings, and whether the simulated account's keys were kept from an earlier run or created. */
export interface DevelopmentSettings {
  /** `NAME=value` lines with comments. */
  text: string;
  keys: "kept" | "created";
}

/**
 * The development settings: the simulated WeChat Pay account in `keysDir` (the keys `npm run sim -- pay` signs with),
 * the dashboard login `admin` / `password` (stored hashed), a session secret, and HOST=127.0.0.1. The account is
 * created only when `keysDir` holds none: one that is there (its .env was deleted, the folder kept) is kept, since the
 * notifications still queued were encrypted with its APIv3 key and new keys would leave the workers unable to open
 * them. One that cannot be used (a file missing or not matching) is refused rather than written over, as
 * `sim keys` refuses without --force.
 */
export async function developmentSettings(keysDir: string, password: string): Promise<DevelopmentSettings> {
  const { generateSimKeys, hasSimKeys, KEY_FILES, loadSimKeys } = await import("@wpn/sim/keys");
  const keys = hasSimKeys(keysDir) ? "kept" : "created";
  if (keys === "created") generateSimKeys(keysDir);
  else {
    try {
      loadSimKeys(keysDir);
    } catch (error) {
      throw new DevelopmentKeysError(
        `the development keys in ${keysDir} cannot be used (${(error as Error).message}); notifications still queued were made with them: restore the file, or move the folder away to have new keys written`,
      );
    }
  }
  const { hashPassword } = await import("@wpn/dashboard/password");
  // The folder's env file names the key files by the absolute paths they had when written; a kept folder may have
  // moved since (a renamed or copied checkout), so those settings name the files where the folder is now.
  const keyFiles: Record<string, string> = {
    WECHATPAY_PUBLIC_KEY_PATH: KEY_FILES.publicKey,
    WECHATPAY_PLATFORM_CERT_PATHS: KEY_FILES.certificate,
    WECHATPAY_SIM_PUBLIC_KEY_PRIVATE_PATH: KEY_FILES.publicKeyPrivate,
    WECHATPAY_SIM_PLATFORM_CERT_PRIVATE_PATH: KEY_FILES.certificatePrivate,
  };
  const accountLines = readFileSync(resolve(keysDir, KEY_FILES.env), "utf8")
    .trim()
    .split("\n")
    .map((line) => {
      const name = line.slice(0, line.indexOf("="));
      const file = keyFiles[name];
      return file === undefined ? line : `${name}=${resolve(keysDir, file)}`;
    });
  const text = [
    ...accountLines,
    `DASHBOARD_USERS=admin:operator:${hashPassword(password)}`,
    `DASHBOARD_SESSION_SECRET=${randomBytes(32).toString("base64url")}`,
    "# This machine only: the development login and keys are not for the network (the default, 0.0.0.0, is for containers).",
    "HOST=127.0.0.1",
  ].join("\n");
  return { text, keys };
}
