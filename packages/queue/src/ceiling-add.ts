import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { BulkEntry } from "./bulk-add.ts";
import { addStandardJobKeys, captureAddOptions, standardAddLua } from "./bullmq-add-script.ts";

/**
 * Adding jobs to one queue only while fewer than a ceiling wait in it, in ONE Redis script call: the count and the
 * adds are one atomic step, so processes adding at once never take the queue past the ceiling together (a count read
 * before an add would let each of them add on the same reading). Each job is written as `queue.add` writes it, under
 * the entry's id (bullmq-add-script.ts); a job whose id exists is left as it is, and counts as placed whatever the
 * queue holds: it needs no room.
 *
 * New events queue behind the ones turned away: once an add of `new` entries was refused one, further `new` entries
 * are refused too, whatever room there is, until the entries turned away are back (`stored` adds, then
 * `storedDrained()`). Otherwise a consumer slower than the traffic frees each slot for the next new event before the
 * stored ones are offered it again, and those wait until the traffic falls.
 */
export interface CeilingAdder {
  /**
   * Adds `entries` in order until `ceiling` jobs wait in the queue: its wait list (BullMQ 6.7 keeps a paused queue's
   * jobs there too) and its delayed set — the retries of a consumer that fails every attempt (its downstream down)
   * wait out their backoff there, leaving the wait list near empty while Redis grows by every new event. Resolves
   * once Redis confirmed, with `placed`: how many entries, from the first, are in the queue now (added, or already
   * there), and `added` of those; the entries from `placed` on were refused, the queue being full — or, for `new`
   * entries, events turned away earlier not being all back yet.
   */
  add(
    entries: readonly BulkEntry[],
    ceiling: number,
    nowMs: number,
    origin: "new" | "stored",
  ): Promise<{ placed: number; added: number }>;
  /** The entries turned away are all back (the caller's store of them has none left): `new` entries get room again. */
  storedDrained(): Promise<void>;
  /**
   * An entry turned away is now in the caller's store: `new` entries wait behind it again. The script set the flag when
   * it turned the entry away, but the entry is stored a moment later, and a `storedDrained()` in between (the caller's
   * store read before the entry was in it) cleared the flag while the entry was not back.
   */
  storedWaiting(): Promise<void>;
}

// KEYS[1..9] = the queue's keys (addStandardJobKeys; KEYS[1] its wait list, KEYS[6] its delayed set), KEYS[10] = the
// flag "entries turned away are not all back" (TURNED_AWAY_KEY).
// ARGV[1] = msgpacked options template, ARGV[2] = key prefix of the queue's jobs, ARGV[3] = now (ms), ARGV[4] = ceiling,
// ARGV[5] = '1' for new entries, '0' for stored ones, then per job i: ARGV[3 + 3i] = name, ARGV[4 + 3i] = id,
// ARGV[5 + 3i] = data (JSON).
// Answers { entries placed, jobs added }.
function ceilingLua(): string {
  return `${standardAddLua()}
local add, close = openStandardAdd(ARGV[1], ARGV[2], ARGV[3])
local ceiling = tonumber(ARGV[4])
local new = ARGV[5] == '1'
local behind = new and rcall('EXISTS', KEYS[10]) == 1
local count = (#ARGV - 5) / 3
local held = rcall('LLEN', KEYS[1]) + rcall('ZCARD', KEYS[6])
local placed, added = 0, 0
for i = 1, count do
  local id = ARGV[4 + 3 * i]
  if rcall('EXISTS', ARGV[2] .. id) == 0 and (behind or held >= ceiling) then break end
  if add(ARGV[3 + 3 * i], id, ARGV[5 + 3 * i]) == 'added' then
    added = added + 1
    held = held + 1
  end
  placed = placed + 1
end
close()
if new and placed < count then rcall('SET', KEYS[10], '1') end
return { placed, added }`;
}

/** Suffix of the flag's key, under the queue's job prefix (job ids are notification ids: `v3:…`, `v2:…`). */
const TURNED_AWAY_KEY = "wpn:turned-away";

interface CeilingCommand {
  wpnCeilingAdd(numberOfKeys: number, ...args: (string | number | Buffer)[]): Promise<[number, number]>;
}

/** An adder for `queue`, sending through `redis` (the connection the Queue uses). */
export function createCeilingAdder(queue: Queue, redis: Redis): CeilingAdder {
  const commands = redis as Redis & Partial<CeilingCommand>;
  if (typeof commands.wpnCeilingAdd !== "function") redis.defineCommand("wpnCeilingAdd", { lua: ceilingLua() });
  const command = commands as Redis & CeilingCommand;
  const { queueKeys, jobPrefix } = addStandardJobKeys(queue);
  const turnedAwayKey = `${jobPrefix}${TURNED_AWAY_KEY}`;
  let opts: Promise<Buffer> | undefined;
  return {
    async add(entries, ceiling, nowMs, origin) {
      if (entries.length === 0) return { placed: 0, added: 0 };
      opts ??= captureAddOptions(queue);
      const keys = [...queueKeys, turnedAwayKey];
      const args: (string | number | Buffer)[] = [...keys, await opts, jobPrefix, nowMs, ceiling];
      args.push(origin === "new" ? "1" : "0");
      for (const entry of entries) args.push(entry.name, entry.id, JSON.stringify(entry.data));
      const [placed, added] = await command.wpnCeilingAdd(keys.length, ...args);
      return { placed, added };
    },
    async storedDrained() {
      await redis.del(turnedAwayKey);
    },
    async storedWaiting() {
      await redis.set(turnedAwayKey, "1");
    },
  };
}
