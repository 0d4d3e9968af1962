/**
 * Failed-login limiter: at most `limit` failures per client IP in a sliding one-minute window. In memory,
 * per process: enough to make password guessing against one dashboard impractical without a Redis round
 * trip on the login path. The login route records every attempt as a failure before checking the password
 * (so parallel attempts count), and a successful login clears the IP's failures.
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
    const recent = this.recent(ip);
    if (recent.length < this.limit) return 0;
    const oldest = recent[0] ?? this.now();
    return Math.max(1, Math.ceil((oldest + this.windowMs - this.now()) / 1000));
  }

  recordFailure(ip: string): void {
    const recent = this.recent(ip);
    recent.push(this.now());
    this.failures.set(ip, recent);
    // Bound memory under a spray of source addresses: drop IPs whose window has passed.
    if (this.failures.size > 10_000) {
      for (const key of this.failures.keys()) if (this.recent(key).length === 0) this.failures.delete(key);
    }
  }

  recordSuccess(ip: string): void {
    this.failures.delete(ip);
  }

  private recent(ip: string): number[] {
    const cutoff = this.now() - this.windowMs;
    const recent = (this.failures.get(ip) ?? []).filter((t) => t > cutoff);
    if (recent.length === 0) this.failures.delete(ip);
    return recent;
  }
}
