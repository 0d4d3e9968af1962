-- Dashboard logouts, shared by every replica and kept across restarts (before: remembered in the memory of the one
-- process that served the logout, so a captured session cookie kept working on the other replicas and after a
-- restart until it expired). One row per logged-out session until the session would have expired anyway; a logout
-- deletes the expired rows by the "expiresAt" index. A new, empty table: the plain CREATE INDEX locks nothing in use.
CREATE TABLE "RevokedSession" (
    "sid" TEXT NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "RevokedSession_pkey" PRIMARY KEY ("sid")
);

CREATE INDEX "RevokedSession_expiresAt_idx" ON "RevokedSession"("expiresAt");
