import { createHash } from "node:crypto";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { addStandardJobKeys, captureAddOptions, standardAddLua } from "./bullmq-add-script.ts";
import { receiptKey } from "./receipts.ts";

/**
 * Adding a batch of notification jobs with their receipts in ONE Redis script call.
 *
 * The ingress acknowledges a notification only after its job is in Redis. Done with `queue.addBulk`, every job
 * is its own EVALSHA of BullMQ's `addStandardJob` script (plus a Job object, msgpack and an ioredis command on
 * the client), and receipts need two more script calls per batch; at thousands of notifications per second that
 * was the largest CPU item of the ingress after RSA (bench/ingress-report.md). Here the batch is one EVALSHA
 * whose Lua loops over the jobs and adds each one as `queue.add` would — BullMQ's `addStandardJob` for this
 * package's case, with its per-queue reads done once per batch (bullmq-add-script.ts) — so the job, the wait list,
 * the marker and the events are exactly what `queue.add` would have written (the queue-package tests compare the
 * whole Redis state the two leave and have a real Worker process the jobs). The options come from BullMQ: they
 * are captured once from BullMQ's own add path for the queue's default job options.
 *
 * Per job, atomically with the add (one script = one atomic step in Redis):
 * - a receipt `<prefix>:receipt:<id>` exists → the delivery is counted on it (`count`, `last`), no job is added
 *   ("receipt": a redelivery of a notification accepted before, maybe long ago, whose job may be gone);
 * - otherwise the job is added under jobId = id — or found, when a job with that id still exists ("job") — and
 *   the receipt is recorded (`first`, `last`, `count`, expiry `ttlSeconds` after the first delivery).
 * Invariant: a receipt exists only for an id whose job Redis holds or held.
 *
 * At maxmemory under noeviction Redis refuses the script at its first write, having written nothing of the batch, so
 * the batch's requests get 503 for notifications Redis did not keep, none half-recorded (oom-add.test.ts). That holds
 * because Redis stops a script for OOM only while it has written nothing: no write Redis lets through at the limit
 * (EXPIRE, PEXPIRE, DEL) may come before the first one it refuses (HSET, HINCRBY, XADD…), or the script would go on
 * writing past it.
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
  /**
   * One script call for the whole batch; resolves with one outcome per entry, in order. Rejects when Redis fails, and
   * with replication (ReplicationOptions) with NotReplicatedError when too few replicas acknowledged the write.
   */
  add(entries: readonly ReceiptedEntry[], nowMs: number): Promise<ReceiptedOutcome[]>;
}

// KEYS[1..9] = the queue's keys (addStandardJobKeys), KEYS[9 + i] = receipt key of job i.
// ARGV[1] = msgpacked options template (BullMQ's encoding for this queue), ARGV[2] = job name,
// ARGV[3] = key prefix of the queue's jobs, ARGV[4] = now (ms), ARGV[5] = receipt TTL (s),
// then per job i: ARGV[3 + 3i] = id, ARGV[4 + 3i] = data (JSON, UTF-8 bytes), ARGV[5 + 3i] = deliveries.
function batchLua(): string {
  return `${standardAddLua()}
local name, jobPrefix, now, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local add, close = openStandardAdd(ARGV[1], jobPrefix, now)
local outcomes = {}
for i = 1, #KEYS - 9 do
  local receipt = KEYS[9 + i]
  local id, data, deliveries = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  if rcall('EXISTS', receipt) == 1 then
    rcall('HINCRBY', receipt, 'count', deliveries)
    rcall('HSET', receipt, 'last', now)
    outcomes[i] = 'receipt'
  else
    outcomes[i] = add(name, id, data)
    rcall('HSET', receipt, 'first', now, 'last', now, 'count', deliveries)
    rcall('EXPIRE', receipt, ttl)
  end
end
close()
return outcomes`;
}

interface BatchCommand {
  wpnReceiptedAdd(numberOfKeys: number, ...args: (string | number | Buffer)[]): Promise<ReceiptedOutcome[]>;
}

/** Opt-in: a batch counts as added only once its write reached `replicas` replicas (Redis's WAIT). */
export interface ReplicationOptions {
  /** Replicas that must acknowledge each batch's write (WAIT's numreplicas), ≥ 1. */
  replicas: number;
  /** WAIT's timeout, ms, ≥ 1 (0 would block for ever). */
  timeoutMs: number;
}

/**
 * A batch written on the primary that fewer than the required replicas acknowledged within the timeout. The jobs and
 * receipts are in the primary's memory; a failover now could still lose them, so they must not be acknowledged.
 */
export class NotReplicatedError extends Error {
  override readonly name = "NotReplicatedError";

  constructor(
    readonly acked: number,
    readonly required: number,
    timeoutMs: number,
  ) {
    super(`${acked} of ${required} replica(s) acknowledged the write within ${timeoutMs} ms`);
  }
}

/**
 * An adder for jobs named `name` on `queue`, sending through `redis` (the ingress's producer connection; BullMQ's
 * Queue must use the same prefix). The options template is captured at the first call. With `replication`, each
 * batch is followed by WAIT on the same connection and `add` rejects with NotReplicatedError when too few replicas
 * acknowledged it (replicatedSender); without, nothing but the script call is sent.
 */
export function createReceiptedAdder(
  queue: Queue,
  redis: Redis,
  name: string,
  options: { prefix: string; ttlSeconds: number; replication?: ReplicationOptions },
): ReceiptedAdder {
  const send = options.replication ? replicatedSender(redis, options.replication) : scriptSender(redis);
  const { queueKeys, jobPrefix } = addStandardJobKeys(queue);
  let opts: Promise<Buffer> | undefined;
  return {
    async add(entries, nowMs) {
      if (entries.length === 0) return [];
      opts ??= captureAddOptions(queue);
      const args: (string | number | Buffer)[] = [...queueKeys];
      for (const entry of entries) args.push(receiptKey(options.prefix, entry.id));
      args.push(await opts, name, jobPrefix, nowMs, options.ttlSeconds);
      // The payload as the UTF-8 bytes Redis stores (the same bytes the string would become): the options template is a
      // Buffer, so ioredis serialises this command in buffer mode, where a string argument is measured with
      // Buffer.byteLength three times and concatenated into another string before it is copied, and a Buffer is copied
      // once — about 15% less client time per job (3–27% per round) for a 1.7 KB notification (JSON.stringify plus
      // ioredis Command.toWritable, batches of 1 and 16; bench/ingress-report.md, sixteenth session).
      for (const entry of entries) args.push(entry.id, Buffer.from(JSON.stringify(entry.data)), entry.deliveries);
      return send(9 + entries.length, args);
    },
  };
}

/** What sends one batch's script call: numberOfKeys, then the keys and arguments. */
type Sender = (numberOfKeys: number, args: (string | number | Buffer)[]) => Promise<ReceiptedOutcome[]>;

/** The script as an ioredis command (EVAL on a connection's first call, EVALSHA after, EVAL again on NOSCRIPT). */
function scriptSender(redis: Redis): Sender {
  const commands = redis as Redis & Partial<BatchCommand>;
  if (typeof commands.wpnReceiptedAdd !== "function") {
    redis.defineCommand("wpnReceiptedAdd", { lua: batchLua() });
  }
  const command = commands as Redis & BatchCommand;
  return (numberOfKeys, args) => command.wpnReceiptedAdd(numberOfKeys, ...args);
}

/**
 * The batch script followed by `WAIT replicas timeoutMs`, both written to the connection in the same tick: Redis runs
 * WAIT right after the script (one client's commands run in order), so WAIT counts the replicas that acknowledged the
 * batch's own write, and a healthy replica costs no extra round trip (Redis asks its replicas for their offset as soon
 * as a client waits).
 *
 * The script goes as a plain EVAL (the first batch) or EVALSHA, not through ioredis's defined command: that one, on
 * NOSCRIPT (a SCRIPT FLUSH, a failover to a server without it), sends the script again after the answer — after the
 * pipelined WAIT had run, which would then have counted only earlier writes. Here a NOSCRIPT sends EVAL and a new
 * WAIT together (one more round trip, once per server that lacks the script).
 */
function replicatedSender(redis: Redis, { replicas, timeoutMs }: ReplicationOptions): Sender {
  // WAIT 0 … would count nothing, and a timeout of 0 blocks the connection for ever.
  if (!(Number.isInteger(replicas) && replicas >= 1 && Number.isInteger(timeoutMs) && timeoutMs >= 1)) {
    throw new RangeError(`replication needs whole replicas ≥ 1 and timeoutMs ≥ 1, not ${replicas} and ${timeoutMs}`);
  }
  const lua = batchLua();
  const sha = createHash("sha1").update(lua).digest("hex");
  const thenWait = async (write: Promise<unknown>) => {
    const acked = redis.wait(replicas, timeoutMs);
    const [written, waited] = await Promise.allSettled([write, acked]);
    // A failed write is the failure to report; WAIT's answer (or error) means nothing without it.
    if (written.status === "rejected") throw written.reason;
    if (waited.status === "rejected") throw waited.reason;
    if (waited.value < replicas) throw new NotReplicatedError(waited.value, replicas, timeoutMs);
    return written.value as ReceiptedOutcome[];
  };
  // Whether the script was run (so cached by Redis) since this adder began; EVAL until then, EVALSHA after.
  let loaded = false;
  const withEval = async (numberOfKeys: number, args: (string | number | Buffer)[]) => {
    const outcomes = await thenWait(redis.eval(lua, numberOfKeys, ...args));
    loaded = true;
    return outcomes;
  };
  return async (numberOfKeys, args) => {
    if (!loaded) return withEval(numberOfKeys, args);
    try {
      return await thenWait(redis.evalsha(sha, numberOfKeys, ...args));
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith("NOSCRIPT"))) throw error;
      return withEval(numberOfKeys, args);
    }
  };
}
