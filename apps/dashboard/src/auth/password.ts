import { randomBytes, type ScryptOptions, scrypt, scryptSync, timingSafeEqual } from "node:crypto";

/**
 * Dashboard password hashes: scrypt from node:crypto, with its cost parameters stored in the hash so they can
 * be raised later without invalidating existing users.
 *
 *   scrypt.<N>.<r>.<p>.<salt base64url>.<key base64url>      e.g. scrypt.16384.8.1.3q2-7w….Yk9…
 *
 * Why not the `$`-separated PHC look (`scrypt$salt$hash`): the hash lives in DASHBOARD_USERS, and `$` is
 * interpolated by Docker Compose env files and shells, which would silently corrupt it. The alphabet here
 * (letters, digits, `.`, `-`, `_`) needs no quoting anywhere and never contains DASHBOARD_USERS's `:` and `,`.
 * For hashes written by hand in that style, `scrypt$<saltB64>$<keyB64>` (standard base64, N=16384, r=8, p=1)
 * is accepted too.
 */
const DEFAULTS = { N: 16_384, r: 8, p: 1 } as const;
const KEY_LENGTH = 64;
const SALT_LENGTH = 16;

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** scrypt's cost parameters: N (CPU/memory, a power of two), r (block size), p (parallelism). */
export interface HashCost {
  N: number;
  r: number;
  p: number;
}

/**
 * The least N·r a configured hash may have: the default's. scrypt's memory (128·N·r bytes, 16 MiB here) is what makes
 * each offline guess dear, and its time grows with it; p only repeats that work side by side, in no more memory, so it
 * does not make up for a smaller N·r. Anything verifiable was accepted before, N=2 included: a hash whose guessing
 * costs next to nothing, for whoever reads DASHBOARD_USERS (an env file, `docker inspect`, a CI log).
 */
export const MIN_MEMORY_COST = DEFAULTS.N * DEFAULTS.r;

/** Whether `stored` is a hash this module can verify and as dear to guess as the CLI's (MIN_MEMORY_COST). */
export function isCostEnough(stored: string): boolean {
  const cost = hashCostOf(stored);
  return cost !== undefined && cost.N * cost.r >= MIN_MEMORY_COST;
}

/** Hashes a password (synchronous: it is meant for the CLI and start-up scripts, ~50 ms at the default cost). */
export function hashPassword(plain: string, cost: HashCost = DEFAULTS): string {
  if (typeof plain !== "string" || plain.length === 0) throw new Error("password must be a non-empty string");
  const salt = randomBytes(SALT_LENGTH);
  const { N, r, p } = cost;
  const key = scryptSync(plain.normalize("NFC"), salt, KEY_LENGTH, { N, r, p, maxmem: maxmem(cost) });
  return ["scrypt", N, r, p, salt.toString("base64url"), key.toString("base64url")].join(".");
}

/** The cost parameters of a hash, or undefined when this module cannot verify it. */
export function hashCostOf(stored: string): HashCost | undefined {
  const parsed = parsePasswordHash(stored);
  return parsed && { N: parsed.N, r: parsed.r, p: parsed.p };
}

/**
 * True when `plain` matches `stored`. Asynchronous (scrypt runs on the libuv threadpool) so a login does not
 * block the event loop. Malformed hashes are false, never an exception.
 */
export async function verifyPassword(plain: string, stored: string): Promise<boolean> {
  const parsed = parsePasswordHash(stored);
  if (!parsed || typeof plain !== "string") return false;
  const candidate = await scryptAsync(plain.normalize("NFC"), parsed.salt, parsed.key.length, {
    N: parsed.N,
    r: parsed.r,
    p: parsed.p,
    maxmem: maxmem(parsed),
  });
  return candidate.length === parsed.key.length && timingSafeEqual(candidate, parsed.key);
}

/** Whether `stored` is a hash this module can verify (used to reject bad DASHBOARD_USERS at start-up). */
export function isPasswordHash(stored: string): boolean {
  return parsePasswordHash(stored) !== undefined;
}

function parsePasswordHash(stored: string): ParsedHash | undefined {
  if (typeof stored !== "string") return undefined;
  const dotted = /^scrypt\.(\d{1,8})\.(\d{1,3})\.(\d{1,3})\.([A-Za-z0-9_-]{16,})\.([A-Za-z0-9_-]{32,})$/.exec(stored);
  const dollar = /^scrypt\$([A-Za-z0-9+/]{16,}={0,2})\$([A-Za-z0-9+/]{32,}={0,2})$/.exec(stored);
  let parsed: ParsedHash;
  if (dotted) {
    parsed = {
      N: Number(dotted[1]),
      r: Number(dotted[2]),
      p: Number(dotted[3]),
      salt: Buffer.from(dotted[4] ?? "", "base64url"),
      key: Buffer.from(dotted[5] ?? "", "base64url"),
    };
  } else if (dollar) {
    parsed = {
      ...DEFAULTS,
      salt: Buffer.from(dollar[1] ?? "", "base64"),
      key: Buffer.from(dollar[2] ?? "", "base64"),
    };
  } else {
    return undefined;
  }
  // Bounds keep a typo in the configuration from turning every login into a multi-gigabyte scrypt.
  const powerOfTwo = parsed.N > 1 && (parsed.N & (parsed.N - 1)) === 0;
  if (!powerOfTwo || parsed.N > 2 ** 20 || parsed.r < 1 || parsed.r > 32 || parsed.p < 1 || parsed.p > 16) {
    return undefined;
  }
  if (parsed.salt.length < 8 || parsed.key.length < 16) return undefined;
  return parsed;
}

/** scrypt needs 128·N·r bytes; Node's default cap (32 MiB) is just too small for N=2^17 and above. */
function maxmem({ N, r }: { N: number; r: number }): number {
  return 128 * N * r * 2 + 1024 * 1024;
}

function scryptAsync(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}
