import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";

/**
 * How long a replay's claim on its letter lasts unless renewed, ms. The replay renews it every third of that while
 * it runs, however long its `onReplayed` hook takes; the expiry only frees the letter of a replay whose process died.
 */
export const REPLAY_CLAIM_MS = 60_000;

/** Deletes the claim only when it still holds this replay's token: an expired claim may be another replay's now. */
const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** Extends the claim only when it still holds this replay's token. */
const RENEW_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;

interface ClaimCommands {
  wpnReplayClaimRelease(numberOfKeys: number, key: string, token: string): Promise<number>;
  wpnReplayClaimRenew(numberOfKeys: number, key: string, token: string, ms: number): Promise<number>;
}

/** Registers the scripts on `redis` (idempotent); ioredis falls back from EVALSHA to EVAL after a Redis restart. */
function withClaimCommands(redis: Redis): Redis & ClaimCommands {
  const candidate = redis as Redis & Partial<ClaimCommands>;
  if (typeof candidate.wpnReplayClaimRelease !== "function") {
    redis.defineCommand("wpnReplayClaimRelease", { lua: RELEASE_LUA });
    redis.defineCommand("wpnReplayClaimRenew", { lua: RENEW_LUA });
  }
  return redis as Redis & ClaimCommands;
}

/**
 * A replay's hold on one letter against a concurrent replay of the same letter (a double click, two operators, the
 * CLI beside the dashboard): without it both would pass every check and record the letter's replay (REPLAYED event,
 * audit row) twice for one re-run. The key holds a random token, so a replay only ever renews or deletes its own
 * claim — never the one a second replay took after the first one's had expired.
 */
export class ReplayClaim {
  readonly #redis: Redis & ClaimCommands;
  readonly #key: string;
  readonly #token = randomUUID();
  readonly #ms: number;
  #renewal: NodeJS.Timeout | undefined;

  private constructor(redis: Redis, key: string, ms: number) {
    this.#redis = withClaimCommands(redis);
    this.#key = key;
    this.#ms = ms;
  }

  /** Takes the claim `key` for `ms` and keeps renewing it until released; undefined when another replay holds it. */
  static async take(redis: Redis, key: string, ms = REPLAY_CLAIM_MS): Promise<ReplayClaim | undefined> {
    const claim = new ReplayClaim(redis, key, ms);
    if ((await redis.set(key, claim.#token, "PX", ms, "NX")) === null) return undefined;
    claim.#renewal = setInterval(() => claim.#renew(), Math.max(1, Math.floor(ms / 3)));
    // The timer keeps no process alive (a CLI exits when its work is done).
    claim.#renewal.unref();
    return claim;
  }

  /** Stops renewing and deletes the claim if it is still this replay's. */
  async release(): Promise<void> {
    clearInterval(this.#renewal);
    await this.#redis.wpnReplayClaimRelease(1, this.#key, this.#token);
  }

  #renew(): void {
    // A renewal Redis refuses is not fatal: the next one, a third of the claim's life later, tries again; only a
    // claim unrenewed for its whole life expires.
    this.#redis.wpnReplayClaimRenew(1, this.#key, this.#token, this.#ms).catch(() => undefined);
  }
}
