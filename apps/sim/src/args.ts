import { isAbsolute, resolve } from "node:path";
import { parseArgs } from "node:util";
import { MCHID_PATTERN } from "@wpn/config";
import type { Io } from "./io.ts";
import { UsageError } from "./io.ts";
import { DEFAULT_KEYS_DIR, hasSimKeys, KEYS_DIR_ENV, loadSimKeys, type SimKeys, SimKeysError } from "./keys.ts";

/** Option table in node:util parseArgs' format. */
export type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string; multiple?: false }>;
export type Values = Record<string, string | boolean | undefined>;

/**
 * node:util parseArgs in strict mode, with its errors rewritten to name the flag and point at --help.
 */
export function parseCommandArgs(
  command: string,
  argv: readonly string[],
  options: OptionSpec,
  positionals: { max: number },
): { values: Values; positionals: string[] } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (err) {
    const message = (err as Error).message;
    const code = (err as { code?: string }).code;
    const flag = /'(-{1,2}[^'\s<]+)/.exec(message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new UsageError(`unknown option ${flag ?? message}`, flag);
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      const spec = flag ? options[flag.replace(/^-+/, "")] : undefined;
      throw new UsageError(
        spec?.type === "boolean" ? `${flag} takes no value` : `${flag ?? "an option"} needs a value`,
        flag,
      );
    }
    throw new UsageError(`${command}: ${message}`);
  }
  const values = parsed.values as Values;
  if (parsed.positionals.length > positionals.max) {
    const extra = parsed.positionals[positionals.max];
    throw new UsageError(`unexpected argument "${extra}"`);
  }
  return { values, positionals: parsed.positionals };
}

export function stringFlag(values: Values, name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new UsageError(`--${name} needs a value`, `--${name}`);
  if (v.trim() === "") throw new UsageError(`--${name} must not be empty`, `--${name}`);
  return v;
}

export function boolFlag(values: Values, name: string): boolean {
  return values[name] === true;
}

export function intFlag(
  values: Values,
  name: string,
  opts: { min: number; max: number; what: string },
): number | undefined {
  const v = stringFlag(values, name);
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new UsageError(`--${name} must be ${opts.what}, got "${v}"`, `--${name}`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < opts.min || n > opts.max) {
    throw new UsageError(`--${name} must be ${opts.what} between ${opts.min} and ${opts.max}, got ${v}`, `--${name}`);
  }
  return n;
}

/**
 * WeChat Pay's amounts are int fen: at most 2^31 − 1 (21 474 836.47 yuan). The merchant's Order.amountTotal is a
 * PostgreSQL integer too, so a larger --amount was sent as no real notification is and failed --seed's insert.
 */
export const MAX_AMOUNT_FEN = 2_147_483_647;

/** --amount in fen, 1 to MAX_AMOUNT_FEN. */
export function amountFlag(values: Values): number | undefined {
  return intFlag(values, "amount", { min: 1, max: MAX_AMOUNT_FEN, what: "a whole number of fen" });
}

export function numberFlag(
  values: Values,
  name: string,
  opts: { min: number; max: number; minExclusive?: boolean; what: string },
): number | undefined {
  const v = stringFlag(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  const tooSmall = opts.minExclusive ? n <= opts.min : n < opts.min;
  if (!/^[0-9.eE+-]+$/.test(v) || !Number.isFinite(n) || tooSmall || n > opts.max) {
    const range = `${opts.minExclusive ? ">" : ">="} ${opts.min} and <= ${opts.max}`;
    throw new UsageError(`--${name} must be ${opts.what} ${range}, got "${v}"`, `--${name}`);
  }
  return n;
}

export function enumFlag<T extends string>(values: Values, name: string, allowed: readonly T[]): T | undefined {
  const v = stringFlag(values, name);
  if (v === undefined) return undefined;
  const match = allowed.find((a) => a.toLowerCase() === v.toLowerCase());
  if (match === undefined)
    throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, got "${v}"`, `--${name}`);
  return match;
}

/** An http(s) URL. */
export function urlFlag(values: Values, name: string, fallback: string | (() => string)): URL {
  const v = stringFlag(values, name) ?? (typeof fallback === "function" ? fallback() : fallback);
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new UsageError(`--${name} must be an http:// or https:// URL, got "${v}"`, `--${name}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--${name} must be an http:// or https:// URL, got "${v}"`, `--${name}`);
  }
  return url;
}

/** Merchant numbers are digits (WECHATPAY_MCHID's rule). */
export function mchidFlag(values: Values): string | undefined {
  const v = stringFlag(values, "mchid");
  if (v !== undefined && !MCHID_PATTERN.test(v))
    throw new UsageError(`--mchid must be 6-32 digits, got "${v}"`, "--mchid");
  return v;
}

/** A WeChat order/refund number: 6-32 of [A-Za-z0-9_-|*@] (WeChat's rule for out_trade_no). */
export function tradeNoFlag(values: Values, name: string): string | undefined {
  const v = stringFlag(values, name);
  if (v !== undefined && !/^[A-Za-z0-9_\-|*@]{1,64}$/.test(v)) {
    throw new UsageError(`--${name} must be 1-64 letters, digits or _-|*@, got "${v}"`, `--${name}`);
  }
  return v;
}

/**
 * The keys folder: --keys, else $WECHATPAY_SIM_KEYS, else .dev/keys (relative to the working directory). An empty
 * WECHATPAY_SIM_KEYS is unset, as an empty PORT or DATABASE_URL is: it named the working directory itself.
 */
export function keysDir(values: Values, io: Io): string {
  const given = stringFlag(values, "keys") ?? (io.env[KEYS_DIR_ENV] || DEFAULT_KEYS_DIR);
  return isAbsolute(given) ? given : resolve(io.cwd, given);
}

export function requireKeys(values: Values, io: Io): SimKeys {
  const dir = keysDir(values, io);
  if (!hasSimKeys(dir)) {
    // Named as where the folder came from: advising to set WECHATPAY_SIM_KEYS to the one that named it says nothing.
    const [source, otherwise] =
      values.keys !== undefined
        ? ["--keys", ""]
        : io.env[KEYS_DIR_ENV]
          ? [`${KEYS_DIR_ENV} (environment or .env)`, ", or pass --keys DIR"]
          : ["no --keys given and", `, or pass --keys DIR (or set ${KEYS_DIR_ENV})`];
    throw new UsageError(
      `${source} ${dir} holds no simulator keys: run \`wechatpay-sim keys --out ${dir}\` first${otherwise}`,
      "--keys",
    );
  }
  try {
    return loadSimKeys(dir);
  } catch (err) {
    if (err instanceof SimKeysError) throw new UsageError(`--keys: ${err.message}`, "--keys");
    throw err;
  }
}

/**
 * Database URL from --database-url or DATABASE_URL; undefined when neither is set. A refusal names where the URL came
 * from (a DATABASE_URL of the environment or .env is no flag anybody gave) and does not repeat it: its password is in
 * it, as the apps' own check says.
 */
export function databaseUrl(values: Values, io: Io): string | undefined {
  const flag = stringFlag(values, "database-url");
  const v = flag ?? io.env.DATABASE_URL;
  if (v === undefined || v === "") return undefined;
  if (!/^postgres(ql)?:\/\//.test(v)) {
    const source = flag === undefined ? "DATABASE_URL (environment or .env)" : "--database-url";
    throw new UsageError(
      `${source} must be a postgresql:// (or postgres://) URL (the value is not repeated)`,
      "--database-url",
    );
  }
  return v;
}
