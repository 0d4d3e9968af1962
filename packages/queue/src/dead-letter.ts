import type { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { isUsableJobId } from "./job-id.ts";
import { type DeadLetter, deadLetterSchema } from "./jobs/dead.ts";
import { decodeJob } from "./jobs/decode.ts";
import { QueueName } from "./names.ts";
import { createQueue } from "./queues.ts";
import { REPLAY_CLAIM_MS, ReplayClaim } from "./replay-claim.ts";
import { isPutBack, putBack } from "./replay-put-back.ts";

/** Which replay of which letter a hook is called for. */
export interface ReplayAttempt {
  /** The letter's job id in `notify.dead`. */
  letterId: string;
  /** The replay's number for this letter (ReplayClaim): a later replay of the letter has a higher one. */
  fence: number;
}

/**
 * What `onReplayed` did, as recordReplay of @wpn/db answers: `recorded` — this replay is recorded now; `resumed` — an
 * earlier replay of the letter recorded it and did not finish (its process died, or paused past its claim), and this
 * one completes it without recording it again; `superseded` — a later replay has the letter, this one stands down.
 */
export type ReplayRecorded = "recorded" | "resumed" | "superseded";

export interface ReplayDeps {
  /** A non-blocking connection (role `admin` or `producer`); it is shared, never closed here. */
  connection: Redis;
  prefix: string;
  /**
   * Records the replay durably, e.g. `recordReplay` of @wpn/db (NotificationEvent REPLAYED, status back to
   * RECEIVED/PROCESSING), once per replay of a letter whoever completes it: answers `resumed` for a replay an earlier
   * call recorded and did not finish, `superseded` when a later replay has the letter (nothing returned: `recorded`).
   * Called BEFORE the job goes back to its queue, because the job can finish within milliseconds of the add: recorded
   * after it, the timeline would read DEAD_LETTERED → APPLIED → REPLAYED, and a re-run that fails at once (a
   * permanent error is dead-lettered on its first attempt) would be DEAD again before the record moved it back to
   * PROCESSING, for good. The letter is removed only after the add. So a replay that stops between the record and the
   * add (its process killed, or paused past its claim) leaves the record, the letter and no job: the next replay of
   * the letter takes the record over (`resumed`) and puts the job back. Never the other way round: a job running that
   * nobody recorded (or audited). A failed add is undone by `onReplayFailed`.
   */
  onReplayed?: (letter: DeadLetter, attempt: ReplayAttempt) => Promise<ReplayRecorded>;
  /**
   * Called when the job could not be put back after `onReplayed` recorded the replay: undoes that record, e.g.
   * `recordReplayFailed` of @wpn/db (status back to DEAD, REPLAY_FAILED event), so the notification does not say its
   * job waits while only the letter holds it — but only if the record is still this replay's: answers false (nothing
   * undone) when a later replay took it over, which puts the job back itself. If this fails too, the outcome's message
   * says so.
   */
  onReplayFailed?: (letter: DeadLetter, message: string, attempt: ReplayAttempt) => Promise<boolean>;
  /**
   * How long a replay's claim on its letter lasts unless renewed, ms (default 60 000); renewed every third of it
   * while the replay runs. Tests shorten it.
   */
  claimMs?: number;
}

export type ReplayStatus =
  /** Back in its stage queue. */
  | "replayed"
  /** An earlier replay of the letter recorded it and did not finish (its process died, or paused past its claim); this
   *  one completed it — the job put back, or found put back, and the letter removed — recording nothing again. */
  | "resumed"
  /** No dead letter with that id. */
  | "not-found"
  /** The letter's payload is not one this version understands; left in place. */
  | "invalid"
  /** The original job is still waiting, delayed or running in its stage queue, or the letter is being replayed
   *  by another call (also: one that took it over from this call, whose claim expired); nothing to do yet. */
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
    const dead = queues.get(QueueName.Dead);
    const taken = await ReplayClaim.take(
      deps.connection,
      `${deps.prefix}:${QueueName.Dead}:replaying:${id}`,
      dead.toKey(id),
      deps.claimMs ?? REPLAY_CLAIM_MS,
    );
    if (taken === "no-letter") return { id, status: "not-found" };
    if (taken === "held") return { id, status: "in-flight", message: `dead letter ${id} is being replayed` };
    claim = taken;
    const job = await readLetter(dead, id);
    if (typeof job === "string") return { id, status: "invalid", message: job };
    return job ? await replayClaimed(deps, queues, job, claim) : { id, status: "not-found" };
  } catch (error) {
    return { id, status: "failed", message: messageOf(error) };
  } finally {
    // A claim Redis does not delete expires within claimMs; the outcome is what the replay did.
    await claim?.release().catch(() => undefined);
  }
}

/**
 * The letter's job, undefined when there is none, or why it cannot be read: BullMQ parses a job hash's JSON fields
 * (`data`, `opts`) as it reads them and throws a SyntaxError for one that is not JSON (a write cut short, a hand edit)
 * — a letter this version does not understand, as one whose payload fails its schema, not a failed replay.
 */
async function readLetter(dead: Queue, id: string): Promise<Job | undefined | string> {
  try {
    return await dead.getJob(id);
  } catch (error) {
    if (error instanceof SyntaxError) return `the letter's job hash is not JSON: ${error.message}`;
    throw error;
  }
}

async function replayClaimed(
  deps: ReplayDeps,
  queues: QueueCache,
  job: Job,
  claim: ReplayClaim,
): Promise<ReplayOutcome> {
  const id = job.id ?? "";
  const decoded = decodeJob(deadLetterSchema, job.data);
  if (!decoded.ok) return { id, status: "invalid", message: decoded.message };
  const letter = decoded.value;
  const base = { id, queue: letter.queue, notificationId: letter.notificationId };
  const attempt: ReplayAttempt = { letterId: id, fence: claim.fence };
  try {
    if (claim.putBackBy !== undefined) {
      // An earlier replay put the job back and stopped before removing the letter: it is recorded and its job ran or
      // waits; replaying it again would run it twice.
      return await removeLetter(job, {
        ...base,
        status: "resumed",
        message: "an earlier replay of this letter had put its job back; the letter is removed now",
      });
    }
    const stage = queues.get(letter.queue);
    const original = await stage.getJob(letter.jobId);
    if (original) {
      const state = await original.getState();
      if (state !== "failed" && state !== "completed" && state !== "unknown") {
        return { ...base, status: "in-flight", message: `job ${letter.jobId} is ${state} in ${letter.queue}` };
      }
      await original.remove();
    }
    // Recorded before the add, and the letter removed after it: why, and what a stop between leaves, see onReplayed.
    const recorded = (await deps.onReplayed?.(letter, attempt)) ?? "recorded";
    if (recorded === "superseded") {
      return { ...base, status: "in-flight", message: "a later replay of this letter has taken it over" };
    }
    const status = recorded === "resumed" ? "resumed" : "replayed";
    const message =
      recorded === "resumed"
        ? "completed a replay of this letter recorded earlier that had not put its job back"
        : undefined;
    const letterKey = queues.get(QueueName.Dead).toKey(id);
    let put: Awaited<ReturnType<typeof putBack>>;
    try {
      put = await putBack(deps.connection, stage, letterKey, letter, claim.fence);
    } catch (error) {
      return await afterFailedPutBack(
        deps,
        { job, stage, letterKey, letter, attempt },
        { ...base, status, message },
        error,
      );
    }
    if (put === "superseded" || put === "gone") {
      // This replay's claim expired under it (a pause) and a later replay took the letter, or the letter was removed.
      const why =
        put === "superseded"
          ? "this replay's claim expired before its job was put back, and a later replay took the letter"
          : "the letter was removed before its job was put back";
      const undo = await undoRecord(deps, letter, why, attempt);
      return { ...base, status: put === "gone" && !undo.takenOver ? "not-found" : "in-flight", message: undo.message };
    }
    return await removeLetter(job, { ...base, status, message });
  } catch (error) {
    return { ...base, status: "failed", message: messageOf(error) };
  }
}

/**
 * The put-back script threw (Redis refused it, or its answer was lost): if the job is back all the same, the letter is
 * removed as after a put-back; if it is not, the record is undone; if Redis cannot tell, the record is kept — the next
 * replay of the letter takes it over and completes it.
 */
async function afterFailedPutBack(
  deps: ReplayDeps,
  at: { job: Job; stage: Queue; letterKey: string; letter: DeadLetter; attempt: ReplayAttempt },
  done: ReplayOutcome,
  error: unknown,
): Promise<ReplayOutcome> {
  const base = { id: done.id, queue: done.queue, notificationId: done.notificationId };
  const message = messageOf(error);
  let back: boolean;
  try {
    back = await isPutBack(deps.connection, at.stage, at.letterKey, at.letter, at.attempt.fence);
  } catch (probeError) {
    return {
      ...base,
      status: "failed",
      message:
        `${message}; whether the job is back is unknown (${messageOf(probeError)}): the replay stays recorded, and ` +
        "replaying the letter again completes it",
    };
  }
  if (back) return await removeLetter(at.job, done);
  const undo = await undoRecord(deps, at.letter, message, at.attempt);
  return { ...base, status: undo.takenOver ? "in-flight" : "failed", message: undo.message };
}

/**
 * Removes the letter of a job that is back. The job is back and recorded whatever happens here, so the outcome stays
 * `done`; a letter that could not be removed carries the put-back mark, and its next replay only removes it.
 */
async function removeLetter(job: Job, done: ReplayOutcome): Promise<ReplayOutcome> {
  try {
    await job.remove();
    return done;
  } catch (error) {
    const note = `its letter could not be removed (${messageOf(error)}): replaying the letter again removes it`;
    return { ...done, message: done.message ? `${done.message}; ${note}` : note };
  }
}

/**
 * The job was not put back after the replay was recorded: undoes the record unless a later replay took it over
 * (`takenOver`: that replay puts the job back); the message, with the undo's failure.
 */
async function undoRecord(
  deps: ReplayDeps,
  letter: DeadLetter,
  message: string,
  attempt: ReplayAttempt,
): Promise<{ takenOver: boolean; message: string }> {
  try {
    if ((await deps.onReplayFailed?.(letter, message, attempt)) === false) {
      return { takenOver: true, message: `${message}; a later replay of this letter has taken its record over` };
    }
    return { takenOver: false, message };
  } catch (undoError) {
    return {
      takenOver: false,
      message: `${message}; the replay's record was not undone either: ${messageOf(undoError)}`,
    };
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
