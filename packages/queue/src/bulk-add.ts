import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { addStandardJobKeys, captureAddOptions, standardAddLua } from "./bullmq-add-script.ts";

/**
 * Adding a batch of jobs to one queue in ONE Redis script call: each job as `queue.add` writes it
 * (bullmq-add-script.ts) with the queue's default options and jobId = the entry's id — a job whose id exists is
 * left as it is, exactly as `queue.add`/`addBulk` do. `queue.addBulk` sends one EVALSHA per job and builds a `Job`
 * and a msgpack buffer for each; for the worker's apply enqueue (one batch of jobs per parse batch) this is the
 * same effect at about a third of the client CPU per job (measured for the ingress's receipted variant).
 * A Redis script is atomic. At maxmemory under noeviction it is refused at its first write, before it wrote anything
 * (Redis stops a script for OOM only while it has written nothing: oom-add.test.ts); a command that fails mid-script for
 * another reason (a key of the wrong type) leaves the jobs before it added, so callers retry the whole batch, which the
 * deterministic job ids make harmless.
 */
export interface BulkEntry {
  name: string;
  /**
   * Job id (a deterministic id: adding it twice adds one job). Not checked the way `queue.add` checks ids
   * (BullMQ's Job#validateOptions): callers pass ids already known usable (the ingress checks notification ids).
   */
  id: string;
  /** The job payload; serialised with JSON.stringify like BullMQ does. */
  data: unknown;
}

export interface BulkAdder {
  /**
   * One script call for the whole batch; resolves once Redis confirmed every job, with the number of jobs it added
   * (entries whose job id existed are not counted). Rejects when Redis fails.
   */
  add(entries: readonly BulkEntry[], nowMs: number): Promise<number>;
}

// KEYS[1..9] = the queue's keys (addStandardJobKeys).
// ARGV[1] = msgpacked options template, ARGV[2] = key prefix of the queue's jobs, ARGV[3] = now (ms),
// then per job i: ARGV[1 + 3i] = name, ARGV[2 + 3i] = id, ARGV[3 + 3i] = data (JSON).
// Answers { jobs processed, jobs added }.
function bulkLua(): string {
  return `${standardAddLua()}
local add, close = openStandardAdd(ARGV[1], ARGV[2], ARGV[3])
local count = (#ARGV - 3) / 3
local added = 0
for i = 1, count do
  if add(ARGV[1 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i]) == 'added' then added = added + 1 end
end
close()
return { count, added }`;
}

interface BulkCommand {
  wpnBulkAdd(numberOfKeys: number, ...args: (string | number | Buffer)[]): Promise<[number, number]>;
}

/**
 * An adder for `queue`, sending through `redis` (the connection the Queue uses, or one with the same server and
 * prefix). The options template is captured at the first call.
 */
export function createBulkAdder(queue: Queue, redis: Redis): BulkAdder {
  const commands = redis as Redis & Partial<BulkCommand>;
  if (typeof commands.wpnBulkAdd !== "function") redis.defineCommand("wpnBulkAdd", { lua: bulkLua() });
  const command = commands as Redis & BulkCommand;
  const { queueKeys, jobPrefix } = addStandardJobKeys(queue);
  let opts: Promise<Buffer> | undefined;
  return {
    async add(entries, nowMs) {
      if (entries.length === 0) return 0;
      opts ??= captureAddOptions(queue);
      const args: (string | number | Buffer)[] = [...queueKeys, await opts, jobPrefix, nowMs];
      for (const entry of entries) args.push(entry.name, entry.id, JSON.stringify(entry.data));
      const [processed, added] = await command.wpnBulkAdd(queueKeys.length, ...args);
      if (processed !== entries.length) throw new Error(`bulk add answered ${processed} for ${entries.length} job(s)`);
      return added;
    },
  };
}
