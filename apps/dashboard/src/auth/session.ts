import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { DashboardUser, Role } from "./users.ts";

export interface SessionUser {
  name: string;
  role: Role;
}

/** What the session cookie carries. Times are seconds since the epoch. */
export interface SessionClaims {
  sub: string;
  role: Role;
  /** Random id, so one session can be revoked (logout) without affecting the user's other sessions. */
  sid: string;
  /**
   * The user's credential when the session began: the first 16 bytes of an HMAC of their password hash, keyed by a
   * key derived from the secret (the claims are readable, and a plain digest would let anyone holding the cookie test
   * guesses of the hash offline). A new hash in DASHBOARD_USERS (a password reset) ends the user's sessions.
   */
  cred: string;
  iat: number;
  exp: number;
}

/** The password hash each configured user has now; undefined for a name that is not configured. */
export type PasswordHashOf = (name: string) => string | undefined;

/**
 * How far in the future a session's issue time may be: replicas share sessions, and their clocks differ by a little
 * (a login on one replica is followed at once by a request to another). Beyond that, the issuing clock was wrong.
 */
export const CLOCK_SKEW_SECONDS = 60;

/**
 * Stateless signed session cookies: `v1.<claims base64url>.<HMAC-SHA256 base64url>`. The HMAC key is derived
 * from DASHBOARD_SESSION_SECRET with a purpose label, so the same secret can sign other things (the CSRF
 * secret cookie) without one signature ever being valid as the other. Nothing secret is in the claims:
 * they are signed, not encrypted.
 *
 * A session ends at the earliest of: its `exp` (the lifetime when it was issued), `iat` plus the lifetime configured
 * now (a shorter DASHBOARD_SESSION_TTL_SECONDS applies to sessions already issued), a change of the user's password
 * hash, logout, and a rotation of DASHBOARD_SESSION_SECRET (every session everywhere).
 *
 * Logout is not this codec's: a cookie it verifies may have been logged out on any replica, which only PostgreSQL
 * knows (`RevokedSession`, see revocations.ts; the auth guard checks it after `verify`).
 */
export class SessionCodec {
  private readonly key: Buffer;
  private readonly credentialKey: Buffer;

  constructor(
    secret: string,
    private readonly ttlSeconds: number,
    private readonly now: () => number = Date.now,
  ) {
    this.key = deriveKey(secret, "session");
    this.credentialKey = deriveKey(secret, "session credential");
  }

  issue(user: DashboardUser): { value: string; claims: SessionClaims } {
    const iat = Math.floor(this.now() / 1000);
    const claims: SessionClaims = {
      sub: user.name,
      role: user.role,
      sid: randomBytes(12).toString("base64url"),
      cred: this.credential(user.passwordHash),
      iat,
      exp: iat + this.ttlSeconds,
    };
    const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
    return { value: `v1.${payload}.${this.sign(payload)}`, claims };
  }

  /**
   * The claims of a valid, unexpired cookie value whose user is configured with the password hash the session began
   * with; undefined for anything else. Whether the session was logged out is not checked here (see the class).
   */
  verify(value: string | undefined, passwordHashOf: PasswordHashOf): SessionClaims | undefined {
    if (!value) return undefined;
    const parts = value.split(".");
    if (parts.length !== 3 || parts[0] !== "v1") return undefined;
    const [, payload = "", mac = ""] = parts;
    const expected = Buffer.from(this.sign(payload), "base64url");
    const given = Buffer.from(mac, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let claims: SessionClaims;
    try {
      claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as SessionClaims;
    } catch {
      return undefined;
    }
    const { sub, sid, cred, iat, exp } = claims;
    if (typeof sub !== "string" || typeof sid !== "string" || typeof cred !== "string") return undefined;
    if (typeof iat !== "number" || typeof exp !== "number") return undefined;
    const nowSeconds = Math.floor(this.now() / 1000);
    if (exp <= nowSeconds || iat + this.ttlSeconds <= nowSeconds || iat > nowSeconds + CLOCK_SKEW_SECONDS) {
      return undefined;
    }
    const passwordHash = passwordHashOf(sub);
    // The claims are signed, so the comparison needs no constant time.
    if (passwordHash === undefined || this.credential(passwordHash) !== cred) return undefined;
    return claims;
  }

  get maxAgeSeconds(): number {
    return this.ttlSeconds;
  }

  private sign(payload: string): string {
    return createHmac("sha256", this.key).update(payload).digest("base64url");
  }

  private credential(passwordHash: string): string {
    return createHmac("sha256", this.credentialKey).update(passwordHash).digest().subarray(0, 16).toString("base64url");
  }
}

/** A key for one purpose, derived from the configured secret (HMAC as a PRF). */
export function deriveKey(secret: string, purpose: string): Buffer {
  return createHmac("sha256", secret).update(`wechatpay-notify dashboard ${purpose} v1`).digest();
}
