import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";

/**
 * How long a replay's claim on its letter lasts unless renewed, ms. The replay renews it every third of that while
 * it runs, however long its `onReplayed` hook takes; the expiry frees the letter of a replay whose process died — or
 * of one paused longer than that (a VM or GC pause, renewals Redis did not get), which the fence then keeps from
 * acting on the letter after another replay took it.
 */
export const REPLAY_CLAIM_MS = 60_000;

/**
 * Fields of ours in a letter's job hash (BullMQ reads only its own fields; they go with the letter when it is removed):
 * the number of the latest replay that took the letter (its fence), and the fence of the replay that put the letter's
 * job back (set in the script that puts it back, so a letter whose replay stopped before removing it says so).
 */
export const LETTER_FENCE_FIELD = "wpnReplayFence";
export const LETTER_PUT_BACK_FIELD = "wpnPutBackBy";

/**
 * Takes the claim only if the letter exists, and gives the replay the letter's next fence; answers [fence, put-back
 * fence or ''], [0, ''] when there is no letter (no claim taken, no key written), [-1, ''] when another replay holds
 * the claim. The EXISTS comes first: HINCRBY on a missing key would create a hash where BullMQ looks for a job.
 */
const TAKE_LUA = `
if redis.call('EXISTS', KEYS[2]) == 0 then return {0, ''} end
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return {-1, ''} end
local fence = redis.call('HINCRBY', KEYS[2], '${LETTER_FENCE_FIELD}', 1)
return {fence, redis.call('HGET', KEYS[2], '${LETTER_PUT_BACK_FIELD}') or ''}`;

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
  wpnReplayClaimTake(
    numberOfKeys: number,
    claim: string,
    letter: string,
    token: string,
    ms: number,
  ): Promise<[number, string]>;
  wpnReplayClaimRelease(numberOfKeys: number, key: string, token: string): Promise<number>;
  wpnReplayClaimRenew(numberOfKeys: number, key: string, token: string, ms: number): Promise<number>;
}

/** Registers the scripts on `redis` (idempotent); ioredis falls back from EVALSHA to EVAL after a Redis restart. */
function withClaimCommands(redis: Redis): Redis & ClaimCommands {
  const candidate = redis as Redis & Partial<ClaimCommands>;
  if (typeof candidate.wpnReplayClaimTake !== "function") {
    redis.defineCommand("wpnReplayClaimTake", { lua: TAKE_LUA });
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
 *
 * A claim can still expire under a replay that is alive (paused longer than its life), so what the replay writes is
 * fenced as well: `fence` is the replay's number for this letter, one more than the previous replay's, kept in the
 * letter. The script that puts the job back does so only while the letter's fence is still this replay's, and the
 * database keeps the highest fence that recorded the replay (recordReplay of @wpn/db): a replay another one took the
 * letter from neither puts the job back nor records.
 */
export class ReplayClaim {
  readonly #redis: Redis & ClaimCommands;
  readonly #key: string;
  readonly #token: string;
  readonly #ms: number;
  readonly #renewal: NodeJS.Timeout;

  private constructor(
    redis: Redis & ClaimCommands,
    key: string,
    token: string,
    ms: number,
    /** This replay's number for the letter (≥ 1); a later replay of the letter has a higher one. */
    readonly fence: number,
    /** The fence of an earlier replay that put the letter's job back and stopped before removing the letter. */
    readonly putBackBy: number | undefined,
  ) {
    this.#redis = redis;
    this.#key = key;
    this.#token = token;
    this.#ms = ms;
    this.#renewal = setInterval(() => this.#renew(), Math.max(1, Math.floor(ms / 3)));
    // The timer keeps no process alive (a CLI exits when its work is done).
    this.#renewal.unref();
  }

  /**
   * Takes the claim `key` on the letter whose job hash is `letterKey` for `ms` and keeps renewing it until released;
   * "held" when another replay holds it, "no-letter" when there is no such letter (nothing written then).
   */
  static async take(
    redis: Redis,
    key: string,
    letterKey: string,
    ms = REPLAY_CLAIM_MS,
  ): Promise<ReplayClaim | "held" | "no-letter"> {
    const commands = withClaimCommands(redis);
    const token = randomUUID();
    const [fence, putBackBy] = await commands.wpnReplayClaimTake(2, key, letterKey, token, ms);
    if (fence === 0) return "no-letter";
    if (fence < 0) return "held";
    return new ReplayClaim(commands, key, token, ms, fence, putBackBy === "" ? undefined : Number(putBackBy));
  }

  /** Stops renewing and deletes the claim if it is still this replay's. */
  async release(): Promise<void> {
    clearInterval(this.#renewal);
    await this.#redis.wpnReplayClaimRelease(1, this.#key, this.#token);
  }

  #renew(): void {
    // A renewal Redis refuses is not fatal: the next one, a third of the claim's life later, tries again; only a
    // claim unrenewed for its whole life expires (and the fence covers a replay that goes on after that).
    this.#redis.wpnReplayClaimRenew(1, this.#key, this.#token, this.#ms).catch(() => undefined);
  }
}
