import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Role } from "./users.ts";

export const SESSION_COOKIE = "wpn_session";

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
  iat: number;
  exp: number;
}

/**
 * Stateless signed session cookies: `v1.<claims base64url>.<HMAC-SHA256 base64url>`. The HMAC key is derived
 * from DASHBOARD_SESSION_SECRET with a purpose label, so the same secret can sign other things (the CSRF
 * secret cookie) without one signature ever being valid as the other. Nothing secret is in the claims:
 * they are signed, not encrypted.
 *
 * Logged-out session ids are remembered in memory until they would have expired anyway. That list is per
 * process (a restart forgets it, and so does another replica), which is acceptable for a console whose
 * sessions last hours; rotating DASHBOARD_SESSION_SECRET invalidates every session everywhere.
 */
export class SessionCodec {
  private readonly key: Buffer;
  private readonly revoked = new Map<string, number>();

  constructor(
    secret: string,
    private readonly ttlSeconds: number,
    private readonly now: () => number = Date.now,
  ) {
    this.key = deriveKey(secret, "session");
  }

  issue(user: SessionUser): { value: string; claims: SessionClaims } {
    const iat = Math.floor(this.now() / 1000);
    const claims: SessionClaims = {
      sub: user.name,
      role: user.role,
      sid: randomBytes(12).toString("base64url"),
      iat,
      exp: iat + this.ttlSeconds,
    };
    const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
    return { value: `v1.${payload}.${this.sign(payload)}`, claims };
  }

  /** The claims of a valid, unexpired, unrevoked cookie value; undefined for anything else. */
  verify(value: string | undefined): SessionClaims | undefined {
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
    if (typeof claims.sub !== "string" || typeof claims.sid !== "string" || typeof claims.exp !== "number") {
      return undefined;
    }
    if (claims.exp <= Math.floor(this.now() / 1000)) return undefined;
    if (this.revoked.has(claims.sid)) return undefined;
    return claims;
  }

  revoke(claims: SessionClaims): void {
    const nowSeconds = Math.floor(this.now() / 1000);
    for (const [sid, exp] of this.revoked) if (exp <= nowSeconds) this.revoked.delete(sid);
    this.revoked.set(claims.sid, claims.exp);
  }

  get maxAgeSeconds(): number {
    return this.ttlSeconds;
  }

  private sign(payload: string): string {
    return createHmac("sha256", this.key).update(payload).digest("base64url");
  }
}

/** A key for one purpose, derived from the configured secret (HMAC as a PRF). */
export function deriveKey(secret: string, purpose: string): Buffer {
  return createHmac("sha256", secret).update(`wechatpay-notify dashboard ${purpose} v1`).digest();
}
