import { Job, type Queue } from "bullmq";

/**
 * Adding many jobs to a BullMQ queue inside ONE Redis script (`createReceiptedAdder`, `createBulkAdder`,
 * `createCeilingAdder`), each job
 * written exactly as `queue.add(name, data, { jobId })` writes it.
 *
 * The Lua below is BullMQ 6.7.0's `addStandardJob` script (bullmq/dist/cjs/scripts/addStandardJob-9.js, pinned in
 * package.json) for the only case this package's queues use — a custom job id, no delay, priority, parent, repeat
 * or deduplication — with what it reads per job hoisted to once per batch. Running BullMQ's whole script text as a
 * Lua function per job (the earlier design) cost Redis ~30 µs of CPU per job, two thirds of it in the Lua
 * interpreter (its ~25 helper functions re-created per call, the options JSON-encoded per job, per-queue reads
 * repeated per job), against ~20 µs now — and Redis is the one process every ingress and worker shares
 * (bench/ingress-report.md, fifth session). Per job, as BullMQ:
 *   id counter +1; a job whose id exists gets a `duplicated` event and is left as it is; otherwise the job hash
 *   (name, data, opts = the queue's options + jobId, timestamp, delay 0, priority 0), an `added` event, LPUSH
 *   (RPUSH with `lifo`) to the wait list, the marker for workers unless the queue is paused or at its concurrency
 *   limit, a `waiting` event trimmed to the queue's maxLenEvents.
 * Per batch instead of per job: the maxLenEvents read (set to 10000 when missing), the paused/concurrency read, the
 * marker (a ZADD of the same member — idempotent), the options' JSON, and the counter (one INCRBY). A batch is one
 * atomic step, so nothing can observe the difference. The queue tests compare the whole Redis state these
 * scripts leave with the state `queue.add` leaves, key by key, and have a real Worker process the jobs: an
 * upgrade of BullMQ that changes what `add` writes fails them.
 *
 * `standardAddLua()` defines, for a script whose KEYS[1..9] are the queue's keys (`addStandardJobKeys`):
 *   `openStandardAdd(packedOpts, jobPrefix, now)` → `add(name, id, data)` ('added' | 'job'), `close()`, which
 *   must run once after the last `add`.
 * The options are a queue's default job options (BullMQ's `DefaultJobOptions`: no parent, repeat or
 * deduplication); delayed and prioritized jobs BullMQ adds with other scripts, and `captureAddOptions` refuses
 * options that lead there.
 */
export function standardAddLua(): string {
  return `
local rcall = redis.call
local function openStandardAdd(packedOpts, jobPrefix, now)
  local waitKey, metaKey, idKey, activeKey, eventsKey, markerKey = KEYS[1], KEYS[3], KEYS[4], KEYS[7], KEYS[8], KEYS[9]
  local opts = cmsgpack.unpack(packedOpts)
  opts['jobId'] = nil
  local optsJson = cjson.encode(opts)
  local optsHead = optsJson == '{}' and '{' or (string.sub(optsJson, 1, -2) .. ',')
  local timestamp = tonumber(now)
  local pushCmd = opts['lifo'] and 'RPUSH' or 'LPUSH'
  local maxEvents, pausedOrMaxed
  local counted, marked = 0, false
  local function add(name, id, data)
    if counted == 0 then
      maxEvents = rcall('HGET', metaKey, 'opts.maxLenEvents')
      if not maxEvents then
        maxEvents = 10000
        rcall('HSET', metaKey, 'opts.maxLenEvents', maxEvents)
      end
      local attributes = rcall('HMGET', metaKey, 'paused', 'concurrency')
      pausedOrMaxed = attributes[1] ~= false
        or (attributes[2] ~= false and rcall('LLEN', activeKey) >= tonumber(attributes[2]))
    end
    counted = counted + 1
    local jobKey = jobPrefix .. id
    if rcall('EXISTS', jobKey) == 1 then
      rcall('XADD', eventsKey, 'MAXLEN', '~', maxEvents, '*', 'event', 'duplicated', 'jobId', id)
      return 'job'
    end
    rcall('HMSET', jobKey, 'name', name, 'data', data, 'opts', optsHead .. '"jobId":' .. cjson.encode(id) .. '}',
      'timestamp', timestamp, 'delay', 0, 'priority', 0)
    rcall('XADD', eventsKey, '*', 'event', 'added', 'jobId', id, 'name', name)
    rcall(pushCmd, waitKey, id)
    if not pausedOrMaxed and not marked then
      rcall('ZADD', markerKey, 0, '0')
      marked = true
    end
    rcall('XADD', eventsKey, 'MAXLEN', '~', maxEvents, '*', 'event', 'waiting', 'jobId', id)
    return 'added'
  end
  local function close()
    if counted > 0 then rcall('INCRBY', idKey, counted) end
  end
  return add, close
end
`;
}

/** The queue's keys the batch scripts take as KEYS[1..9], in this order (addStandardJob's order). */
const QUEUE_KEYS = ["wait", "paused", "meta", "id", "completed", "delayed", "active", "events", "marker"] as const;

function requiredKey(queue: Queue, name: string): string {
  const key = queue.keys[name];
  if (key === undefined) throw new Error(`bullmq queue has no "${name}" key (bullmq upgraded?)`);
  return key;
}

/** KEYS[1..9] of the batch scripts for `queue`, and the prefix of its job hashes. */
export function addStandardJobKeys(queue: Queue): { queueKeys: string[]; jobPrefix: string } {
  return { queueKeys: QUEUE_KEYS.map((k) => requiredKey(queue, k)), jobPrefix: requiredKey(queue, "") };
}

/**
 * The msgpacked options BullMQ's own add path sends for a job on `queue` (the queue's default job options
 * applied; a job's name travels apart from them, so one template serves every name). Captured by running
 * BullMQ's add code against a recording client.
 */
export async function captureAddOptions(queue: Queue): Promise<Buffer> {
  let captured: { command: string; args: unknown[] } | undefined;
  const recorder = {
    runCommand(command: string, args: unknown[]) {
      captured = { command, args };
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
  if (captured && !captured.command.startsWith("addStandardJob:")) {
    throw new Error(
      `bullmq adds jobs with the options of queue ${queue.name} through ${captured.command.split(":")[0]}, ` +
        "which the batch add does not write (delayed or prioritized jobs)",
    );
  }
  const opts = captured?.args[11];
  if (!Buffer.isBuffer(opts)) throw new Error("could not capture bullmq's job options (bullmq upgraded?)");
  return opts;
}
