import type { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { type DeadLetter, deadLetterSchema } from "./jobs/dead.ts";
import { decodeJob } from "./jobs/decode.ts";
import { QueueName } from "./names.ts";
import { createQueue } from "./queues.ts";

export interface ReplayDeps {
  /** A non-blocking connection (role `admin` or `producer`); it is shared, never closed here. */
  connection: Redis;
  prefix: string;
  /**
   * Records the replay durably, e.g. `recordReplay` of @wpn/db (NotificationEvent REPLAYED, status back to
   * RECEIVED/PROCESSING). Called just before the job goes back to its queue; the letter is removed only
   * after that, so a failure or crash anywhere leaves the letter in place, and replaying it again only
   * re-runs an idempotent job.
   */
  onReplayed?: (letter: DeadLetter) => Promise<void>;
}

export type ReplayStatus =
  /** Back in its stage queue. */
  | "replayed"
  /** No dead letter with that id. */
  | "not-found"
  /** The letter's payload is not one this version understands; left in place. */
  | "invalid"
  /** The original job is still waiting, delayed or running in its stage queue, or the letter is being replayed
   *  by another call; nothing to do yet. */
  | "in-flight";

export interface ReplayOutcome {
  /** Dead-letter job id. */
  id: string;
  status: ReplayStatus;
  queue?: DeadLetter["queue"];
  notificationId?: string | null;
  message?: string;
}

/**
 * Moves one dead letter back to the queue it failed in, under its original job id and with its original
 * payload: the stage's own idempotency (database constraints) makes a replay of an already-applied
 * notification a no-op. The failed original is removed from the stage queue first, because BullMQ ignores
 * an add whose job id still exists.
 */
export async function replayDeadLetter(deps: ReplayDeps, id: string): Promise<ReplayOutcome> {
  const queues = new QueueCache(deps);
  try {
    return await replayJob(deps, queues, id);
  } finally {
    await queues.close();
  }
}

/**
 * Replays every dead letter present when the call starts (oldest first). The ids are listed first, so
 * letters written while the loop runs — a replayed job that fails again at once gets a new letter — are
 * left for a later call instead of being replayed in a loop.
 */
export async function replayAllDeadLetters(deps: ReplayDeps, pageSize = 500): Promise<ReplayOutcome[]> {
  const queues = new QueueCache(deps);
  const outcomes: ReplayOutcome[] = [];
  try {
    const dead = queues.get(QueueName.Dead);
    const ids: string[] = [];
    for (let offset = 0; ; offset += pageSize) {
      const page = await dead.getJobs(["waiting", "delayed", "prioritized"], offset, offset + pageSize - 1, true);
      ids.push(...page.map((job) => job.id ?? "").filter((id) => id !== ""));
      if (page.length < pageSize) break;
    }
    for (const id of ids) outcomes.push(await replayJob(deps, queues, id));
    return outcomes;
  } finally {
    await queues.close();
  }
}

/**
 * How long a replay holds its letter against a concurrent replay of the same letter (a double click, two
 * operators), s. A replay takes milliseconds; the expiry only frees the letter of a replay whose process died.
 * Without the claim both would pass every check, and the letter's replay be recorded (onReplayed: audit row,
 * REPLAYED event) twice for one re-run.
 */
const REPLAY_CLAIM_SECONDS = 60;

/** Replays the letter `id` under its claim; the letter is read once claimed (a replay that just finished removed it). */
async function replayJob(deps: ReplayDeps, queues: QueueCache, id: string): Promise<ReplayOutcome> {
  const claim = `${deps.prefix}:${QueueName.Dead}:replaying:${id}`;
  if ((await deps.connection.set(claim, "1", "EX", REPLAY_CLAIM_SECONDS, "NX")) === null) {
    return { id, status: "in-flight", message: `dead letter ${id} is being replayed` };
  }
  try {
    const job = await queues.get(QueueName.Dead).getJob(id);
    return job ? await replayClaimed(deps, queues, job) : { id, status: "not-found" };
  } finally {
    await deps.connection.del(claim);
  }
}

async function replayClaimed(deps: ReplayDeps, queues: QueueCache, job: Job): Promise<ReplayOutcome> {
  const id = job.id ?? "";
  const decoded = decodeJob(deadLetterSchema, job.data);
  if (!decoded.ok) return { id, status: "invalid", message: decoded.message };
  const letter = decoded.value;
  const base = { id, queue: letter.queue, notificationId: letter.notificationId };
  const stage = queues.get(letter.queue);
  const original = await stage.getJob(letter.jobId);
  if (original) {
    const state = await original.getState();
    if (state !== "failed" && state !== "completed" && state !== "unknown") {
      return { ...base, status: "in-flight", message: `job ${letter.jobId} is ${state} in ${letter.queue}` };
    }
    await original.remove();
  }
  // Recorded first so the timeline reads DEAD_LETTERED → REPLAYED → (what the re-run did); the re-run can
  // finish within milliseconds of the add.
  await deps.onReplayed?.(letter);
  await stage.add(letter.jobName, letter.data, { jobId: letter.jobId });
  await job.remove();
  return { ...base, status: "replayed" };
}

/** One Queue object per queue name for the duration of a replay call. */
class QueueCache {
  readonly #queues = new Map<QueueName, Queue>();
  constructor(private readonly deps: ReplayDeps) {}

  get(name: QueueName): Queue {
    let queue = this.#queues.get(name);
    if (!queue) {
      queue = createQueue(name, this.deps.connection, this.deps.prefix);
      this.#queues.set(name, queue);
    }
    return queue;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
  }
}
