import { createRequire } from "node:module";
import { Job, type Queue } from "bullmq";

/**
 * BullMQ's own `addStandardJob` script, reused inside this package's batch scripts (`createReceiptedAdder`,
 * `createBulkAdder`): one EVALSHA adds many jobs, each exactly as `queue.add` would (job hash, wait list, marker,
 * events), instead of one script call per job.
 */
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

/**
 * Lua that defines `bullmqAddStandardJob(KEYS, ARGV, cmsgpack)` (BullMQ's script as a function: its KEYS/ARGV
 * and cmsgpack become parameters, so a loop can pass ready Lua tables and a `cmsgpack` whose unpack returns them
 * as they are — no msgpack round trip per job), plus the locals a batch loop needs:
 * `rcall`, `queueKeys` (KEYS[1..9], the queue's keys in `QUEUE_KEYS` order) and `passThrough`.
 * A batch script calls it per job as
 * `bullmqAddStandardJob(queueKeys, { { jobPrefix, id, name, now }, data, opts }, passThrough)`,
 * with `opts` the unpacked options template and `opts.jobId = id`; a negative number back is BullMQ's error code.
 */
export function addStandardJobPrelude(): string {
  return `
local function bullmqAddStandardJob(KEYS, ARGV, cmsgpack)
${loadAddStandardJob().content}
end
local rcall = redis.call
local queueKeys = { KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9] }
local passThrough = { unpack = function(value) return value end }
`;
}

/** The queue's keys addStandardJob takes, in the order of its KEYS[1..9]. */
const QUEUE_KEYS = ["wait", "paused", "meta", "id", "completed", "delayed", "active", "events", "marker"] as const;

function requiredKey(queue: Queue, name: string): string {
  const key = queue.keys[name];
  if (key === undefined) throw new Error(`bullmq queue has no "${name}" key (bullmq upgraded?)`);
  return key;
}

/** KEYS[1..9] of addStandardJob for `queue`, and the prefix of its job hashes. */
export function addStandardJobKeys(queue: Queue): { queueKeys: string[]; jobPrefix: string } {
  return { queueKeys: QUEUE_KEYS.map((k) => requiredKey(queue, k)), jobPrefix: requiredKey(queue, "") };
}

/**
 * The msgpacked options BullMQ's own add path sends for a job on `queue` (the queue's default job options
 * applied; a job's name travels apart from them, so one template serves every name). Captured by running
 * BullMQ's add code against a recording client.
 */
export async function captureAddOptions(queue: Queue): Promise<Buffer> {
  let captured: unknown[] | undefined;
  const recorder = {
    runCommand(command: string, args: unknown[]) {
      if (command.startsWith("addStandardJob:")) captured = args;
      return Promise.resolve("captured");
    },
  };
  const template = new Job(queue, "template", {}, { ...queue.jobsOpts, jobId: "template" }, "template");
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
