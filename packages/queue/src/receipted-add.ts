import { createRequire } from "node:module";
import { Job, type Queue } from "bullmq";
import type { Redis } from "ioredis";
import { receiptKey } from "./receipts.ts";

/**
 * Adding a batch of notification jobs with their receipts in ONE Redis script call.
 *
 * The ingress acknowledges a notification only after its job is in Redis. Done with `queue.addBulk`, every job
 * is its own EVALSHA of BullMQ's `addStandardJob` script (plus a Job object, msgpack and an ioredis command on
 * the client), and receipts need two more script calls per batch; at thousands of notifications per second that
 * was the largest CPU item of the ingress after RSA (bench/ingress-report.md). Here the batch is one EVALSHA
 * whose Lua loops over the jobs and, for each one, runs BullMQ's own `addStandardJob` script text — the
 * version installed with this package, wrapped as a Lua function — so the job, the wait list, the marker and the
 * events are exactly what `queue.add` would have written (the queue-package test compares the two field by
 * field and has a real Worker process the jobs). The options come from BullMQ too: they are captured once from
 * BullMQ's own add path for the queue's default job options.
 *
 * Per job, atomically with the add (one script = one atomic step in Redis):
 * - a receipt `<prefix>:receipt:<id>` exists → the delivery is counted on it (`count`, `last`), no job is added
 *   ("receipt": a redelivery of a notification accepted before, maybe long ago, whose job may be gone);
 * - otherwise the job is added under jobId = id — or found, when a job with that id still exists ("job") — and
 *   the receipt is recorded (`first`, `last`, `count`, expiry `ttlSeconds` after the first delivery).
 * Invariant: a receipt exists only for an id whose job Redis holds or held.
 */
export type ReceiptedOutcome = "added" | "job" | "receipt";

export interface ReceiptedEntry {
  /** Job id = notification id (already checked usable as a BullMQ job id). */
  id: string;
  /** The job payload; serialised with JSON.stringify like BullMQ does. */
  data: unknown;
  /** Deliveries of this id collapsed into this entry (concurrent resends), ≥ 1. */
  deliveries: number;
}

export interface ReceiptedAdder {
  /** One script call for the whole batch; resolves with one outcome per entry, in order. Rejects when Redis fails. */
  add(entries: readonly ReceiptedEntry[], nowMs: number): Promise<ReceiptedOutcome[]>;
}

/** BullMQ's script for a plain (not delayed, not prioritized, no parent) job, taking 9 keys. */
interface BullmqScript {
  name: string;
  content: string;
  keys: number;
}

const require = createRequire(import.meta.url);

function loadAddStandardJob(): BullmqScript {
  // bullmq has no "exports" map; this is the file its own client loads (the version is pinned in package.json).
  const loaded = require("bullmq/dist/cjs/scripts/addStandardJob-9.js") as { addStandardJob?: BullmqScript };
  const script = loaded.addStandardJob;
  if (!script || typeof script.content !== "string" || script.keys !== 9) {
    throw new Error("bullmq's addStandardJob script is not where @wpn/queue expects it (bullmq upgraded?)");
  }
  return script;
}

// BullMQ's script reads its input with `cmsgpack.unpack(ARGV[1])` (args) and `cmsgpack.unpack(ARGV[3])` (opts).
// Wrapped as a function, its KEYS/ARGV/cmsgpack are parameters: the loop passes ready Lua tables and a
// `cmsgpack` whose unpack returns them as they are (no msgpack round trip per job).
// KEYS[1..9] = the queue's addStandardJob keys, KEYS[9 + i] = receipt key of job i.
// ARGV[1] = msgpacked options template (BullMQ's encoding for this queue), ARGV[2] = job name,
// ARGV[3] = key prefix of the queue's jobs, ARGV[4] = now (ms), ARGV[5] = receipt TTL (s),
// then per job i: ARGV[3 + 3i] = id, ARGV[4 + 3i] = data (JSON), ARGV[5 + 3i] = deliveries.
function batchLua(addStandardJob: string): string {
  return `
local function bullmqAddStandardJob(KEYS, ARGV, cmsgpack)
${addStandardJob}
end
local rcall = redis.call
local queueKeys = { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9] }
local opts = cmsgpack.unpack(ARGV[1])
local name, jobPrefix, now, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local passThrough = { unpack = function(value) return value end }
local outcomes = {}
for i = 1, #KEYS - 9 do
  local receipt = KEYS[9 + i]
  local id, data, deliveries = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  if rcall('EXISTS', receipt) == 1 then
    rcall('HINCRBY', receipt, 'count', deliveries)
    rcall('HSET', receipt, 'last', now)
    outcomes[i] = 'receipt'
  else
    local existed = rcall('EXISTS', jobPrefix .. id) == 1
    opts['jobId'] = id
    local result = bullmqAddStandardJob(queueKeys, { { jobPrefix, id, name, tonumber(now) }, data, opts }, passThrough)
    if type(result) == 'number' and result < 0 then
      return redis.error_reply('bullmq addStandardJob failed with code ' .. result .. ' for job ' .. id)
    end
    rcall('HSET', receipt, 'first', now, 'last', now, 'count', deliveries)
    rcall('EXPIRE', receipt, ttl)
    outcomes[i] = existed and 'job' or 'added'
  end
end
return outcomes`;
}

/** The msgpacked options BullMQ's own add path sends for a job of `name` on `queue` (queue defaults applied). */
async function captureOptions(queue: Queue, name: string): Promise<Buffer> {
  let captured: unknown[] | undefined;
  const recorder = {
    runCommand(command: string, args: unknown[]) {
      if (command.startsWith("addStandardJob:")) captured = args;
      return Promise.resolve("captured");
    },
  };
  const template = new Job(queue, name, {}, { ...queue.jobsOpts, jobId: "template" }, "template");
  const backend = (
    queue as unknown as {
      backend: { addJobToTransaction(client: unknown, job: unknown, jobId: string): Promise<unknown> };
    }
  ).backend;
  await backend.addJobToTransaction(recorder, template.asJSON(), "template");
  const opts = captured?.[11];
  if (!Buffer.isBuffer(opts)) throw new Error("could not capture bullmq's job options (bullmq upgraded?)");
  return opts;
}

function requiredKey(queue: Queue, name: string): string {
  const key = queue.keys[name];
  if (key === undefined) throw new Error(`bullmq queue has no "${name}" key (bullmq upgraded?)`);
  return key;
}

interface BatchCommand {
  wpnReceiptedAdd(numberOfKeys: number, ...args: (string | number | Buffer)[]): Promise<ReceiptedOutcome[]>;
}

/**
 * An adder for jobs named `name` on `queue`, sending through `redis` (the ingress's producer connection; BullMQ's
 * Queue must use the same prefix). The options template is captured at the first call.
 */
export function createReceiptedAdder(
  queue: Queue,
  redis: Redis,
  name: string,
  options: { prefix: string; ttlSeconds: number },
): ReceiptedAdder {
  const commands = redis as Redis & Partial<BatchCommand>;
  if (typeof commands.wpnReceiptedAdd !== "function") {
    redis.defineCommand("wpnReceiptedAdd", { lua: batchLua(loadAddStandardJob().content) });
  }
  const command = commands as Redis & BatchCommand;
  // The 9 keys of addStandardJob, in the order of its KEYS[1..9], and the prefix of job hashes.
  const queueKeys = (
    ["wait", "paused", "meta", "id", "completed", "delayed", "active", "events", "marker"] as const
  ).map((k) => requiredKey(queue, k));
  const jobPrefix = requiredKey(queue, "");
  let opts: Promise<Buffer> | undefined;
  return {
    async add(entries, nowMs) {
      if (entries.length === 0) return [];
      opts ??= captureOptions(queue, name);
      const args: (string | number | Buffer)[] = [...queueKeys];
      for (const entry of entries) args.push(receiptKey(options.prefix, entry.id));
      args.push(await opts, name, jobPrefix, nowMs, options.ttlSeconds);
      for (const entry of entries) args.push(entry.id, JSON.stringify(entry.data), entry.deliveries);
      return command.wpnReceiptedAdd(9 + entries.length, ...args);
    },
  };
}
