// The development `.env` of `npm start`: written whole on first run, completed when an engineer wrote a `.env`
// of their own first (another DATABASE_URL, ports) without configuring a merchant, left alone otherwise.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseDotenv } from "@wpn/config";

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
  if (MERCHANT_SETTING in set) return undefined;
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

/**
 * Applies `mergeDevelopmentEnv` to `envFile`, calling `development` (which creates keys) only when something is to
 * be written. The file ends with mode 0600 either way it was written (it holds keys and the dashboard login's hash),
 * also when it existed with another mode. Returns the names added; undefined when the file was left alone.
 */
export async function ensureDevelopmentEnv(
  envFile: string,
  development: () => Promise<string>,
): Promise<string[] | undefined> {
  const existing = existsSync(envFile) ? readFileSync(envFile, "utf8") : undefined;
  if (existing !== undefined && MERCHANT_SETTING in parseDotenv(existing)) return undefined;
  const merged = mergeDevelopmentEnv(existing, await development());
  if (merged === undefined) return undefined;
  writeFileSync(envFile, merged.text, { mode: 0o600 });
  chmodSync(envFile, 0o600);
  return merged.added;
}

/**
 * The development settings, as `NAME=value` lines with comments: a fresh simulated WeChat Pay account in `keysDir`
 * (the keys `npm run sim -- pay` signs with), the dashboard login `admin` / `password` (stored hashed), a session
 * secret, and HOST=127.0.0.1.
 */
export async function developmentSettings(keysDir: string, password: string): Promise<string> {
  const { generateSimKeys } = await import("@wpn/sim/keys");
  generateSimKeys(keysDir);
  const { hashPassword } = await import("@wpn/dashboard/password");
  return [
    readFileSync(resolve(keysDir, "env"), "utf8").trim(),
    `DASHBOARD_USERS=admin:operator:${hashPassword(password)}`,
    `DASHBOARD_SESSION_SECRET=${randomBytes(32).toString("base64url")}`,
    "# This machine only: the development login and keys are not for the network (the default, 0.0.0.0, is for containers).",
    "HOST=127.0.0.1",
  ].join("\n");
}
