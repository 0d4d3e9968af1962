import { type PrismaClient, recordReplay, recordReplayFailed } from "@wpn/db";
import { type ReplayDeps, type ReplayOutcome, replayAllDeadLetters, replayDeadLetter as replayOne } from "@wpn/queue";

export interface WorkerReplayDeps {
  /** Non-blocking Redis connection (role `admin`); not closed here. */
  connection: ReplayDeps["connection"];
  prefix: string;
  prisma: PrismaClient;
  /** Recorded in the REPLAYED event: the dashboard user, or "cli". */
  actor?: string;
}

/**
 * The dead-letter replay with its database side wired: @wpn/queue moves the letter back to its stage queue,
 * @wpn/db's recordReplay records it once per replay of the letter (the REPLAYED event), and recordReplayFailed undoes
 * the record when the job could not be put back. The dashboard can compose the same two functions itself without
 * importing this app.
 */
export function replayDeps(deps: WorkerReplayDeps): ReplayDeps {
  const actor = deps.actor ?? "worker";
  return {
    connection: deps.connection,
    prefix: deps.prefix,
    onReplayed: (letter, attempt) =>
      recordReplay(deps.prisma, {
        ...attempt,
        notificationId: letter.notificationId,
        queue: letter.queue,
        previousCode: letter.code,
        actor,
      }),
    onReplayFailed: (letter, message, attempt) =>
      recordReplayFailed(deps.prisma, {
        ...attempt,
        notificationId: letter.notificationId,
        queue: letter.queue,
        message,
        actor,
      }),
  };
}

/**
 * Replays one dead letter by its id (`<stage>.<job id>.<job timestamp>`, e.g. `apply.<notification id>.<ms>`,
 * as listed in the `notify.dead` queue), or all with `"--all"`.
 */
export async function replayDeadLetter(deps: WorkerReplayDeps, id: string | "--all"): Promise<ReplayOutcome[]> {
  const wired = replayDeps(deps);
  return id === "--all" ? replayAllDeadLetters(wired) : [await replayOne(wired, id)];
}
