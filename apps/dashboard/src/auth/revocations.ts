import type { PrismaClient } from "@wpn/db";
import { type AuditEntry, recordAudit } from "../data/audit.ts";
import { withTimeout } from "../timeout.ts";
import { CLOCK_SKEW_SECONDS, type SessionClaims } from "./session.ts";

/**
 * Logouts, in PostgreSQL (`RevokedSession`): the session cookie is stateless, so a logout is only as good as every
 * replica's knowledge of it. A row per logged-out session id, kept until the session's own expiry (`exp`) has passed
 * on every replica's clock, after which the cookie is refused anyway; rows past it are deleted by the next logout (by
 * the `expiresAt` index: a few rows, as many as logouts in a session lifetime).
 *
 * No in-memory copy: every authenticated request must ask PostgreSQL anyway (a session not revoked here may have been
 * revoked by another replica a moment ago), and a cache of revoked ids would only spare the lookup for a cookie that
 * was already logged out — not worth a second source of truth.
 */

/**
 * Ends a session everywhere: its revocation and its audit row (`entry`) in one transaction — both or neither, so a
 * logout that cannot be audited does not happen (the error answers 500 and the session still works, visibly), and
 * an audited logout has ended the session on every replica by the time the user is answered.
 */
export async function revokeSession(
  prisma: PrismaClient,
  claims: SessionClaims,
  entry: AuditEntry,
  now: Date,
): Promise<void> {
  await prisma.$transaction(async (tx) => {
    // Only rows expired by CLOCK_SKEW_SECONDS: a replica whose clock is behind this one's (by up to that much, as the
    // codec accepts) still takes the cookie until its own clock reaches `exp`, so the row must outlive that.
    const expiredEverywhere = new Date(now.getTime() - CLOCK_SKEW_SECONDS * 1000);
    await tx.revokedSession.deleteMany({ where: { expiresAt: { lte: expiredEverywhere } } });
    // Two logouts of one session at once (two tabs) both pass the guard; the second insert is a no-op, not an error.
    await tx.revokedSession.createMany({
      data: [{ sid: claims.sid, expiresAt: new Date(claims.exp * 1000) }],
      skipDuplicates: true,
    });
    await recordAudit(tx, entry, now);
  });
}

/**
 * How long a request waits for its logout check, ms. The lookup is one primary-key read (about a millisecond); one
 * unanswered for this long is stuck — a lock held on the table, a connection gone silent — and would otherwise be
 * waited for until the statement timeout (30 s, @wpn/db), freezing every click that long.
 */
export const SESSION_CHECK_TIMEOUT_MS = 3_000;

/**
 * Whether the session was logged out, on any replica: one primary-key lookup. Throws when PostgreSQL fails or has not
 * answered within SESSION_CHECK_TIMEOUT_MS. A lookup abandoned then still holds its pooled connection until PostgreSQL
 * answers or cancels it; its late answer, whichever, is dropped: the request was refused already.
 */
export async function isRevoked(prisma: PrismaClient, sid: string): Promise<boolean> {
  const lookup = prisma.revokedSession.findUnique({ where: { sid }, select: { sid: true } });
  const row = await withTimeout(lookup, SESSION_CHECK_TIMEOUT_MS, "the session's logout check");
  return row !== null;
}
