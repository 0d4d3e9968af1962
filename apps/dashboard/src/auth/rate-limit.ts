import { isIPv6 } from "node:net";

/** One counted attempt, for `recordSuccess`. */
export interface LoginAttempt {
  readonly client: string;
  readonly at: number;
}

/**
 * Failed-login limiter: at most `limit` failures per client in a sliding one-minute window. In memory, per
 * process: enough to make password guessing against one dashboard impractical without a Redis round trip on the
 * login path. The login route records every attempt as a failure before checking the password (so parallel
 * attempts count); a successful login takes back only its own attempt — clearing the client's earlier failures
 * would let a user with a login of their own guess another's password without limit (4 guesses, own login, again).
 * A client is an IPv4 address, or an IPv6 /64: one host usually holds a whole /64, and a counter per address
 * would give it 2^64 of them.
 */
export class LoginRateLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until another attempt is allowed, or 0 when one is allowed now. */
  retryAfterSeconds(ip: string): number {
    const recent = this.recent(clientOf(ip));
    if (recent.length < this.limit) return 0;
    const oldest = recent[0] ?? this.now();
    return Math.max(1, Math.ceil((oldest + this.windowMs - this.now()) / 1000));
  }

  recordFailure(ip: string): LoginAttempt {
    const client = clientOf(ip);
    const recent = this.recent(client);
    const at = this.now();
    recent.push(at);
    this.failures.set(client, recent);
    // Bound memory under a spray of source addresses: drop clients whose window has passed.
    if (this.failures.size > 10_000) {
      for (const key of this.failures.keys()) if (this.recent(key).length === 0) this.failures.delete(key);
    }
    return { client, at };
  }

  /** The attempt succeeded: it no longer counts (the client's other failures still do). */
  recordSuccess(attempt: LoginAttempt): void {
    const recent = this.failures.get(attempt.client);
    const index = recent?.indexOf(attempt.at) ?? -1;
    if (recent && index >= 0) recent.splice(index, 1);
  }

  private recent(client: string): number[] {
    const cutoff = this.now() - this.windowMs;
    const recent = (this.failures.get(client) ?? []).filter((t) => t > cutoff);
    if (recent.length === 0) this.failures.delete(client);
    return recent;
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
