import type { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { isUsableJobId } from "./job-id.ts";
import { type DeadLetter, deadLetterSchema } from "./jobs/dead.ts";
import { decodeJob } from "./jobs/decode.ts";
import { QueueName } from "./names.ts";
import { createQueue } from "./queues.ts";
import { REPLAY_CLAIM_MS, ReplayClaim } from "./replay-claim.ts";

export interface ReplayDeps {
  /** A non-blocking connection (role `admin` or `producer`); it is shared, never closed here. */
  connection: Redis;
  prefix: string;
  /**
   * Records the replay durably, e.g. `recordReplay` of @wpn/db (NotificationEvent REPLAYED, status back to
   * RECEIVED/PROCESSING). Called BEFORE the job goes back to its queue, because the job can finish within
   * milliseconds of the add: recorded after it, the timeline would read DEAD_LETTERED → APPLIED → REPLAYED, and a
   * re-run that fails at once (a permanent error is dead-lettered on its first attempt) would be DEAD again before
   * the record moved it back to PROCESSING, for good. The letter is removed only after the add. So when the add fails
   * (the outcome is `failed`) or the process dies between the two, the record says the job waits while it does not,
   * and the letter stays in `notify.dead`: replaying it again records again and puts the job back. Never the other
   * way round: a job running that nobody recorded (or audited). A failed add is undone by `onReplayFailed`.
   */
  onReplayed?: (letter: DeadLetter) => Promise<void>;
  /**
   * Called when the job could not be put back after `onReplayed` recorded the replay: undoes that record, e.g.
   * `recordReplayFailed` of @wpn/db (status back to DEAD, REPLAY_FAILED event), so the notification does not say its
   * job waits while only the letter holds it. If this fails too, the outcome's message says so.
   */
  onReplayFailed?: (letter: DeadLetter, message: string) => Promise<void>;
  /**
   * How long a replay's claim on its letter lasts unless renewed, ms (default 60 000); renewed every third of it
   * while the replay runs. Tests shorten it.
   */
  claimMs?: number;
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
  | "in-flight"
  /** Something threw (Redis, the `onReplayed` hook; `message` says what); the letter is left in place and can be
   *  replayed again (see `onReplayed` for what a failure after the hook leaves). */
  | "failed";

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
 * left for a later call instead of being replayed in a loop. A letter whose replay fails is reported `failed`
 * and the loop goes on with the next one. Rejects only when the letters cannot be listed.
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
 * Replays the letter `id` under its claim (see ReplayClaim); the letter is read once claimed (a replay that just
 * finished removed it). Answers `failed` instead of throwing, so that one letter's failure does not hide what the
 * others did.
 */
async function replayJob(deps: ReplayDeps, queues: QueueCache, id: string): Promise<ReplayOutcome> {
  // No letter has such an id (letters are added under deadLetterJobId's), and reading one — `events`, `meta` — would
  // read the queue's own keys: WRONGTYPE, or a phantom letter.
  if (!isUsableJobId(id)) return { id, status: "not-found" };
  let claim: ReplayClaim | undefined;
  try {
    claim = await ReplayClaim.take(
      deps.connection,
      `${deps.prefix}:${QueueName.Dead}:replaying:${id}`,
      deps.claimMs ?? REPLAY_CLAIM_MS,
    );
    if (!claim) return { id, status: "in-flight", message: `dead letter ${id} is being replayed` };
    const job = await queues.get(QueueName.Dead).getJob(id);
    return job ? await replayClaimed(deps, queues, job) : { id, status: "not-found" };
  } catch (error) {
    return { id, status: "failed", message: messageOf(error) };
  } finally {
    // A claim Redis does not delete expires within claimMs; the outcome is what the replay did.
    await claim?.release().catch(() => undefined);
  }
}

async function replayClaimed(deps: ReplayDeps, queues: QueueCache, job: Job): Promise<ReplayOutcome> {
  const id = job.id ?? "";
  const decoded = decodeJob(deadLetterSchema, job.data);
  if (!decoded.ok) return { id, status: "invalid", message: decoded.message };
  const letter = decoded.value;
  const base = { id, queue: letter.queue, notificationId: letter.notificationId };
  try {
    const stage = queues.get(letter.queue);
    const original = await stage.getJob(letter.jobId);
    if (original) {
      const state = await original.getState();
      if (state !== "failed" && state !== "completed" && state !== "unknown") {
        return { ...base, status: "in-flight", message: `job ${letter.jobId} is ${state} in ${letter.queue}` };
      }
      await original.remove();
    }
    // Recorded before the add, and the letter removed after it: why, and what a failure between leaves, see onReplayed.
    await deps.onReplayed?.(letter);
    try {
      await stage.add(letter.jobName, letter.data, { jobId: letter.jobId });
    } catch (error) {
      return { ...base, status: "failed", message: await undoRecord(deps, letter, messageOf(error)) };
    }
    await job.remove();
    return { ...base, status: "replayed" };
  } catch (error) {
    return { ...base, status: "failed", message: messageOf(error) };
  }
}

/** The add failed after the replay was recorded: undoes the record; the outcome's message, with the undo's failure. */
async function undoRecord(deps: ReplayDeps, letter: DeadLetter, message: string): Promise<string> {
  try {
    await deps.onReplayFailed?.(letter, message);
    return message;
  } catch (undoError) {
    return `${message}; the replay's record was not undone either: ${messageOf(undoError)}`;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** One Queue object per queue name for the duration of a replay call. */
class QueueCache {
  readonly #queues = new Map<QueueName, Queue>();
  constructor(private readonly deps: ReplayDeps) {}

  get(name: QueueName): Queue {
    let queue = this.#queues.get(name);
    if (!queue) {
      queue = createQueue(name, this.deps.connection, this.deps.prefix);
      // It re-emits the shared connection's errors, which BullMQ would print to stderr if unheard; they reach the
      // caller as this replay's failed commands, and the connection's owner listens to the connection itself.
      queue.on("error", () => undefined);
      this.#queues.set(name, queue);
    }
    return queue;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
  }
}
