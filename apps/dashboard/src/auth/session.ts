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
  /**
   * The session's last use (seconds since the epoch, by the clock of the replica that stamped it): `iat` at the login,
   * moved on by `touch`. Absent from cookies issued before the idle limit existed, which count from `iat`.
   */
  act?: number;
}

/**
 * What a cookie value is: a live session; a session that would be live but is past its lifetime (`expired`) or went
 * unused for longer than the idle limit (`idle`) — both refused, but worth telling apart in the log and metrics; a
 * session past both is `expired`, the limit no use can move; anything else (`invalid`: absent, forged, from another
 * secret, issued in the future, its user gone or their password changed).
 */
export type SessionCheck =
  | { readonly state: "live"; readonly claims: SessionClaims }
  | { readonly state: "expired"; readonly claims: SessionClaims }
  | { readonly state: "idle"; readonly claims: SessionClaims }
  | { readonly state: "invalid" };

/** A session's time limits, seconds: `ttlSeconds` from the login (absolute), `idleSeconds` from its last use. */
export interface SessionLimits {
  readonly ttlSeconds: number;
  readonly idleSeconds: number;
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
 * now (a shorter DASHBOARD_SESSION_TTL_SECONDS applies to sessions already issued), its last use (`act`) plus the idle
 * limit configured now (DASHBOARD_SESSION_IDLE_SECONDS), a change of the user's password hash, logout, and a rotation
 * of DASHBOARD_SESSION_SECRET (every session everywhere).
 *
 * The idle limit without a write per request: the last use travels in the cookie. A request that uses the session
 * gets the cookie re-issued (`touch`: the same claims — sid, iat, exp, cred — with `act` = now, signed again) once the
 * stamp it carries is `slideAfterSeconds` old, a thirtieth of the idle limit: at most one Set-Cookie per 30 s of use
 * by default, and no PostgreSQL at all (a logout still revokes the session id, so every re-issued copy with it). A
 * session therefore ends between 29/30 of the idle limit and the limit after its last use — never later, which is what
 * the limit promises. An old copy of the cookie is no better than the current one: it carries an older `act`.
 *
 * Logout is not this codec's: a cookie it verifies may have been logged out on any replica, which only PostgreSQL
 * knows (`RevokedSession`, see revocations.ts; the auth guard checks it after `check`).
 */
export class SessionCodec {
  private readonly key: Buffer;
  private readonly credentialKey: Buffer;

  private readonly ttlSeconds: number;
  private readonly idleSeconds: number;

  constructor(
    secret: string,
    limits: SessionLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.key = deriveKey(secret, "session");
    this.credentialKey = deriveKey(secret, "session credential");
    this.ttlSeconds = limits.ttlSeconds;
    this.idleSeconds = limits.idleSeconds;
  }

  issue(user: DashboardUser): { value: string; claims: SessionClaims } {
    const iat = this.nowSeconds();
    return this.encode({
      sub: user.name,
      role: user.role,
      sid: randomBytes(12).toString("base64url"),
      cred: this.credential(user.passwordHash),
      iat,
      exp: iat + this.ttlSeconds,
      act: iat,
    });
  }

  /**
   * The session's cookie re-issued with its last use stamped now (see the class), when the stamp `claims` carry is
   * `slideAfterSeconds` old or more; undefined while it is fresher. For a live session only (`check`).
   */
  touch(claims: SessionClaims): { value: string; claims: SessionClaims } | undefined {
    const now = this.nowSeconds();
    if (now - lastUse(claims) < this.slideAfterSeconds) return undefined;
    return this.encode({ ...claims, act: now });
  }

  /**
   * What the cookie value is (`SessionCheck`): `live` for a valid, unexpired cookie whose user is configured with the
   * password hash the session began with and that was used within the idle limit; `expired` for one that passes all
   * that but its lifetime (`lifetimeSeconds`), `idle` for one that passes all but the idle limit. Whether the session
   * was logged out is not checked here (see the class).
   */
  check(value: string | undefined, passwordHashOf: PasswordHashOf): SessionCheck {
    const claims = this.signedClaims(value);
    if (!claims) return INVALID;
    const { sub, sid, cred, iat, exp, act } = claims;
    if (typeof sub !== "string" || typeof sid !== "string" || typeof cred !== "string") return INVALID;
    if (typeof iat !== "number" || typeof exp !== "number") return INVALID;
    if (act !== undefined && (typeof act !== "number" || act < iat)) return INVALID;
    const nowSeconds = this.nowSeconds();
    if (iat > nowSeconds + CLOCK_SKEW_SECONDS) return INVALID;
    // A stamp ahead of this clock by more than the replicas' difference was not made by a sane one (as `iat`).
    if (lastUse(claims) > nowSeconds + CLOCK_SKEW_SECONDS) return INVALID;
    const passwordHash = passwordHashOf(sub);
    // The claims are signed, so the comparison needs no constant time.
    if (passwordHash === undefined || this.credential(passwordHash) !== cred) return INVALID;
    if (iat + this.lifetimeSeconds(claims) <= nowSeconds) return { state: "expired", claims };
    if (lastUse(claims) + this.idleSeconds <= nowSeconds) return { state: "idle", claims };
    return { state: "live", claims };
  }

  /** The claims of a live session's cookie value (`check`), undefined for anything else. */
  verify(value: string | undefined, passwordHashOf: PasswordHashOf): SessionClaims | undefined {
    const result = this.check(value, passwordHashOf);
    return result.state === "live" ? result.claims : undefined;
  }

  /**
   * The session id of a cookie value this secret signed, whatever its state (expired, idle, logged out); undefined for
   * anything else. What CSRF tokens are bound to (csrf.ts): it stays the same while `touch` re-issues the cookie.
   */
  sessionIdOf(value: string | undefined): string | undefined {
    const sid = this.signedClaims(value)?.sid;
    return typeof sid === "string" ? sid : undefined;
  }

  /** The cookie's Max-Age for these claims, seconds: what is left of the session's lifetime. */
  maxAgeSeconds(claims: SessionClaims): number {
    return Math.max(0, claims.iat + this.lifetimeSeconds(claims) - this.nowSeconds());
  }

  /**
   * The session's lifetime from its login, seconds: the shorter of the one it was issued with (`exp - iat`) and the one
   * configured now (DASHBOARD_SESSION_TTL_SECONDS), so lowering the setting shortens sessions already issued.
   */
  lifetimeSeconds(claims: SessionClaims): number {
    return Math.min(claims.exp - claims.iat, this.ttlSeconds);
  }

  /**
   * How old a session's last-use stamp must be before a request re-issues the cookie (`touch`), seconds: a thirtieth of
   * the idle limit (30 s by default, 2 s at the 60 s minimum) — see the class.
   */
  get slideAfterSeconds(): number {
    return Math.max(1, Math.floor(this.idleSeconds / 30));
  }

  private encode(claims: SessionClaims): { value: string; claims: SessionClaims } {
    const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
    return { value: `v1.${payload}.${this.sign(payload)}`, claims };
  }

  /** The parsed claims of a value whose signature this secret made, unchecked otherwise; undefined for anything else. */
  private signedClaims(value: string | undefined): SessionClaims | undefined {
    if (!value) return undefined;
    const parts = value.split(".");
    if (parts.length !== 3 || parts[0] !== "v1") return undefined;
    const [, payload = "", mac = ""] = parts;
    const expected = Buffer.from(this.sign(payload), "base64url");
    const given = Buffer.from(mac, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    } catch {
      // Not JSON behind a valid signature: only a value this secret signed can get here, so it is none of ours.
      return undefined;
    }
    return typeof claims === "object" && claims !== null ? (claims as SessionClaims) : undefined;
  }

  private nowSeconds(): number {
    return Math.floor(this.now() / 1000);
  }

  private sign(payload: string): string {
    return createHmac("sha256", this.key).update(payload).digest("base64url");
  }

  private credential(passwordHash: string): string {
    return createHmac("sha256", this.credentialKey).update(passwordHash).digest().subarray(0, 16).toString("base64url");
  }
}

const INVALID: SessionCheck = { state: "invalid" };

/** When the session was last used, seconds since the epoch: `act`, or `iat` for a cookie issued before `act` existed. */
function lastUse(claims: SessionClaims): number {
  return claims.act ?? claims.iat;
}

/** A key for one purpose, derived from the configured secret (HMAC as a PRF). */
export function deriveKey(secret: string, purpose: string): Buffer {
  return createHmac("sha256", secret).update(`wechatpay-notify dashboard ${purpose} v1`).digest();
}
