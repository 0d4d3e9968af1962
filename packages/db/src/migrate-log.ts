import type { BlockingSession } from "./blocking-sessions.ts";
import type { LockFailure } from "./migration-transaction.ts";

/** What `migrate` reports while it runs, each with a stable code (README, "Database migrations"). */
export type MigrateEvent =
  /** Another session holds the migration lock: this run waits for it, at most `waitLimitMs`. Reported once per run. */
  | {
      code: "MIGRATION_LOCK_WAIT";
      /** The lock's holder as pg_locks and pg_stat_activity show it; null when it let go before it could be read. */
      holder: BlockingSession | null;
      waitLimitMs: number;
    }
  /**
   * A migration waited longer than lock_timeout for a lock, or was a deadlock's victim: rolled back, tried again in
   * `retryInMs`.
   */
  | {
      code: "MIGRATION_RETRY";
      migration: string;
      /** The attempt that failed (1-based), of `attempts`. */
      attempt: number;
      attempts: number;
      reason: LockFailure;
      lockTimeoutMs: number;
      retryInMs: number;
      /** The sessions last seen blocking it (none when they could not be seen). */
      blockers: BlockingSession[];
    };

/** Where `migrate` reports: pino's `warn(fields, message)` fits, so does a script's line on stderr. */
export interface MigrateLog {
  warn(event: MigrateEvent, message: string): void;
}

/** `400 ms`, or `300 s` for whole seconds: as the settings give them. */
export function duration(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000} s` : `${ms} ms`;
}
