import type { JobType } from "bullmq";
import type { Redis } from "ioredis";
import { QueueName } from "./names.ts";
import { createQueue } from "./queues.ts";

/** The dead letters in `notify.dead` at one moment, and the notifications they name: what `db:prune` must keep. */
export interface WaitingLetters {
  /** The letters' job ids (`<stage>.<job id>.<job timestamp>`). */
  letterIds: string[];
  /** The notifications the letters name (their `notificationId`), each once. */
  notificationIds: string[];
}

/**
 * Every state a job can be in. Letters wait (no worker takes them), but bull-board can move one, and a replay by id
 * takes a letter in any state (ReplayClaim checks only that its hash exists), so each counts wherever it is.
 */
const EVERY_STATE: JobType[] = [
  "waiting",
  "delayed",
  "prioritized",
  "active",
  "waiting-children",
  "completed",
  "failed",
];

/** Letters whose payloads are read per round trip. */
const READ_CHUNK = 500;

/**
 * Lists the letters in `notify.dead` under `prefix` and the notifications they name. Letters added after the
 * listing are not in it; letters removed meanwhile may be (keeping a row a moment longer is harmless). Rejects when
 * Redis cannot be read: the caller must not take an unread listing for an empty one.
 */
export async function readWaitingLetters(connection: Redis, prefix: string): Promise<WaitingLetters> {
  const dead = createQueue(QueueName.Dead, connection, prefix);
  // It re-emits the shared connection's errors, which BullMQ would print to stderr if unheard; they reach the caller
  // as this listing's failed commands (as the replay's QueueCache).
  dead.on("error", () => undefined);
  try {
    const letterIds = await dead.getRanges(EVERY_STATE, 0, -1);
    const notificationIds = new Set<string>();
    for (let start = 0; start < letterIds.length; start += READ_CHUNK) {
      const reads = connection.pipeline();
      for (const id of letterIds.slice(start, start + READ_CHUNK)) reads.hget(dead.toKey(id), "data");
      for (const [error, data] of (await reads.exec()) ?? []) {
        if (error) throw error;
        const named = namedNotification(data);
        if (named !== null) notificationIds.add(named);
      }
    }
    return { letterIds, notificationIds: [...notificationIds] };
  } finally {
    await dead.close();
  }
}

/**
 * The `notificationId` of a letter's payload (BullMQ's `data` field, JSON); null for a letter removed since the
 * listing, one naming none, or one that is not JSON — whose replay answers `invalid` and touches no row.
 */
function namedNotification(data: unknown): string | null {
  if (typeof data !== "string") return null;
  let letter: unknown;
  try {
    letter = JSON.parse(data);
  } catch {
    // Not JSON: no notification can be read from it, and its replay stops at `invalid` (see above).
    return null;
  }
  const named =
    typeof letter === "object" && letter !== null ? (letter as { notificationId?: unknown }).notificationId : null;
  return typeof named === "string" ? named : null;
}
