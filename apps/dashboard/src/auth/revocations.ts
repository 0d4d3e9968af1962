import type { Db, DbPool, Prisma, PrismaClient } from "@wpn/db";
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
    // Two logouts of one session at once (two tabs) both pass the guard; the second insert is a no-op, not an error.
    await insertRevocation(tx, claims, now);
    await recordAudit(tx, entry, now);
  });
}

/**
 * A login's writes, in one transaction: the session the request presented (`previous`: a cookie that verifies, live
 * or not), revoked as a logout revokes it — with its `logout` row only when this login ended it, not when it was
 * logged out already — and the login's own audit row. All or nothing: a login that cannot end the session the browser
 * held does not happen (the error answers 500, no new cookie is set, and the old session goes on, visibly), so a login
 * never leaves a copy of the old cookie working beside the new one. True when this login ended `previous` (its
 * `logout` row written), for the caller to count that logout.
 */
export async function recordLogin(
  prisma: PrismaClient,
  login: AuditEntry,
  previous: { claims: SessionClaims; logout: AuditEntry } | undefined,
  now: Date,
): Promise<boolean> {
  return prisma.$transaction(async (tx) => {
    const ended = previous !== undefined && (await insertRevocation(tx, previous.claims, now));
    if (ended) await recordAudit(tx, previous.logout, now);
    await recordAudit(tx, login, now);
    return ended;
  });
}

/**
 * Writes the session's revocation in `tx` (kept until its own expiry) and deletes the rows past theirs. True when
 * this call revoked it; false when it was revoked already (another tab, another replica).
 */
/**
 * A logout of a session whose logout check was not made — an idle cookie's (guard.ts `idleSession`): revoked with its
 * audit row as `revokeSession` does, but the row only when this revocation is the first, since the session may have
 * been logged out already (on another tab or replica). Returns whether it was.
 */
export async function revokeUncheckedSession(
  prisma: PrismaClient,
  claims: SessionClaims,
  entry: AuditEntry,
  now: Date,
): Promise<boolean> {
  return prisma.$transaction(async (tx) => {
    const ended = await insertRevocation(tx, claims, now);
    if (ended) await recordAudit(tx, entry, now);
    return ended;
  });
}

async function insertRevocation(tx: Prisma.TransactionClient, claims: SessionClaims, now: Date): Promise<boolean> {
  // Only rows expired by CLOCK_SKEW_SECONDS: a replica whose clock is behind this one's (by up to that much, as the
  // codec accepts) still takes the cookie until its own clock reaches `exp`, so the row must outlive that.
  const expiredEverywhere = new Date(now.getTime() - CLOCK_SKEW_SECONDS * 1000);
  await tx.revokedSession.deleteMany({ where: { expiresAt: { lte: expiredEverywhere } } });
  const { count } = await tx.revokedSession.createMany({
    data: [{ sid: claims.sid, expiresAt: new Date(claims.exp * 1000) }],
    skipDuplicates: true,
  });
  return count === 1;
}

/**
 * How long a request waits for its logout check, ms. The lookup is one primary-key read (about a millisecond); one
 * unanswered for this long is stuck — a lock held on the table, a connection gone silent — and would otherwise be
 * waited for until the pages' statement timeout (DASHBOARD_PG_STATEMENT_TIMEOUT_MS, 5 s by default), freezing every
 * click that long. It is also PostgreSQL's
 * statement_timeout on the lookups' own connections (`openSessionCheckPool`), so the server gives up on a stuck one then.
 */
export const SESSION_CHECK_TIMEOUT_MS = 3_000;

/**
 * Connections of the session checks' own pool. Two answer far more lookups than a dashboard gets (well under a
 * millisecond each), and cap what a stuck table takes from PostgreSQL's max_connections, per replica, beside
 * DASHBOARD_PG_POOL_MAX.
 */
const SESSION_CHECK_POOL_MAX = 2;

/** Named: pg prepares it once per connection and PostgreSQL reuses the plan (about a quarter less per lookup, measured). */
const LOOKUP = { name: "is_revoked", text: 'SELECT 1 FROM "RevokedSession" WHERE "sid" = $1' } as const;

/**
 * The session checks' pool, apart from the one every page's queries use: a lookup abandoned after
 * SESSION_CHECK_TIMEOUT_MS is cancelled by PostgreSQL at that bound too, and until then it holds one of these
 * connections, never one the order, notification and audit queries (or the readiness check) need. On the main pool
 * such lookups would hold its connections until its statement timeout (DASHBOARD_PG_STATEMENT_TIMEOUT_MS): a few clicks while RevokedSession is
 * locked would leave the whole dashboard waiting for a connection. The caller ends it.
 */
export function openSessionCheckPool(db: Db): DbPool {
  return db.openPool({
    purpose: "session-check",
    max: SESSION_CHECK_POOL_MAX,
    statementTimeoutMs: SESSION_CHECK_TIMEOUT_MS,
    // Waiting longer for a connection than the request waits for the answer would only queue dead lookups.
    connectTimeoutMs: SESSION_CHECK_TIMEOUT_MS,
  });
}

/**
 * Whether the session was logged out, on any replica: one primary-key lookup on `pool` (`openSessionCheckPool`).
 * Throws when PostgreSQL fails or has not answered within SESSION_CHECK_TIMEOUT_MS. A lookup abandoned then is
 * cancelled by PostgreSQL about then (the pool's statement_timeout; the client's own bound 5 s later if the
 * connection went silent), and one that only gets its connection after the request stopped waiting is not sent at
 * all: a stuck RevokedSession holds each of the pool's connections for at most that bound at a time. A late answer or
 * failure, whichever, is dropped: the request was refused already.
 */
export async function isRevoked(pool: DbPool, sid: string): Promise<boolean> {
  let abandoned = false;
  const lookup = async (): Promise<boolean> => {
    const client = await pool.connect();
    let failed = false;
    try {
      if (abandoned) return false;
      const { rowCount } = await client.query({ ...LOOKUP, values: [sid] });
      return rowCount !== 0;
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // As pool.query does: a connection whose statement failed (or timed out on the client) is discarded.
      client.release(failed);
    }
  };
  try {
    return await withTimeout(lookup(), SESSION_CHECK_TIMEOUT_MS, "the session's logout check");
  } finally {
    abandoned = true;
  }
}
