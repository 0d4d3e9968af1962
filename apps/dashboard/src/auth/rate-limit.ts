import { randomUUID } from "node:crypto";
import { isIPv6 } from "node:net";
import type { Redis } from "ioredis";
import { withTimeout } from "../timeout.ts";

/** One counted attempt, for `recordSuccess`: the client's key and the attempt's member in its window. */
export interface LoginAttempt {
  readonly key: string;
  readonly member: string;
}

/** What `attempt` decided: counted (as a failure until `recordSuccess`), or refused for `retryAfterSeconds`. */
export type AttemptDecision = { readonly attempt: LoginAttempt } | { readonly retryAfterSeconds: number };

/** Redis did not answer (error, or not within REDIS_TIMEOUT_MS): the login is refused (fail closed). */
export class LoginLimitUnavailableError extends Error {
  readonly code = "LOGIN_LIMIT_UNAVAILABLE";
}

/** How long a login waits for Redis before it is refused (ms): the admin connection itself retries for longer. */
const REDIS_TIMEOUT_MS = 3_000;

/**
 * One attempt, atomically: drop the window's expired members, then either refuse (the window holds `limit`; answers
 * the oldest member's score, ms) or add this attempt and keep the key for one window (answers nil: a time can be 0).
 * KEYS[1] the client's sorted set; ARGV: now (ms), window (ms), limit, member.
 */
const ATTEMPT_SCRIPT = `
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  return tonumber(oldest[2])
end
redis.call("ZADD", KEYS[1], ARGV[1], ARGV[4])
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return false
`;

/**
 * Failed-login limiter: at most `limit` failures per client in a sliding one-minute window, shared by every dashboard
 * process through Redis (a sorted set per client under the deployment's prefix, scored by the attempt's time in ms):
 * a per-process count would give N replicas behind a load balancer N times the attempts. Check and count are one Lua
 * script, so attempts sent in parallel — to one process or several — see each other in the limit. The login route
 * counts every attempt as a failure before checking the password; a successful login takes back only its own attempt
 * — clearing the client's earlier failures would let a user with a login of their own guess another's password without
 * limit (4 guesses, own login, again). Times are the processes' clocks (`now`), so replicas must agree on the time
 * (as their sessions already need). When Redis does not answer, `attempt` throws LoginLimitUnavailableError and the
 * login is refused: an unlimited login on a payments dashboard is worse than no login for the outage.
 * A client is an IPv4 address, or an IPv6 /64: one host usually holds a whole /64, and a counter per address
 * would give it 2^64 of them.
 */
export class LoginRateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts an attempt from `ip` as a failure, or refuses it when the client's window is full. */
  async attempt(ip: string): Promise<AttemptDecision> {
    const key = `${this.prefix}:dashboard:login-failures:${clientOf(ip)}`;
    const now = this.now();
    const member = `${now}:${randomUUID()}`;
    const oldest = await this.call(
      this.redis.eval(ATTEMPT_SCRIPT, 1, key, now, this.windowMs, this.limit, member),
      "counting the login attempt",
    );
    if (oldest === null) return { attempt: { key, member } };
    return { retryAfterSeconds: Math.max(1, Math.ceil((Number(oldest) + this.windowMs - now) / 1000)) };
  }

  /** The attempt succeeded: it no longer counts (the client's other failures still do). */
  async recordSuccess(attempt: LoginAttempt): Promise<void> {
    await this.call(this.redis.zrem(attempt.key, attempt.member), "taking back the login attempt");
  }

  private async call<T>(command: Promise<T>, what: string): Promise<T> {
    try {
      return await withTimeout(command, REDIS_TIMEOUT_MS, `Redis (${what})`);
    } catch (error) {
      throw new LoginLimitUnavailableError(`the login limit cannot be checked: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
}

/** The limiter's key of an address: IPv4 as it is (also when IPv4-mapped), IPv6 by its /64 prefix. */
export function clientOf(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped?.[1]) return mapped[1];
  if (!isIPv6(ip)) return ip;
  const [head = "", tail = ""] = ip.toLowerCase().split("%")[0]?.split("::") ?? [];
  const left = head === "" ? [] : head.split(":");
  const right = tail === "" ? [] : tail.split(":");
  // An embedded IPv4 tail (a:b::1.2.3.4) is two groups; only the first four groups matter here.
  const groups = ip.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.padStart(4, "0"))
    .join(":")}::/64`;
}
