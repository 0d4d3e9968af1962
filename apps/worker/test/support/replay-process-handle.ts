import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { resolve } from "node:path";
import type { ReplayOutcome } from "@wpn/queue";

const repoRoot = resolve(import.meta.dirname, "../../../..");

/** replay-process.ts's stop points (that file is a script, run on import: not imported here). */
export type StopPoint = "before-record" | "after-record" | "before-letter-removal";

/** A replay running in a process of its own (replay-process.ts), stopping at `stop`. */
export interface ReplayProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Resolves once the replay has stopped at its stop point. */
  readonly stopped: Promise<void>;
  /** Lets the stopped replay go on. */
  goOn(): void;
  /** The replay's outcome once the process ends (undefined when it was killed first), and what it printed. */
  readonly ended: Promise<{ outcome: ReplayOutcome | undefined; output: string; signal: NodeJS.Signals | null }>;
}

export function spawnReplay(
  env: Record<string, string>,
  letterId: string,
  stop: StopPoint,
  claimMs: number,
): ReplayProcess {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "apps/worker/test/support/replay-process.ts", letterId, stop, String(claimMs)],
    { cwd: repoRoot, env: { ...process.env, ...env } },
  );
  let output = "";
  let markStopped: () => void = () => undefined;
  let failStopped: (error: Error) => void = () => undefined;
  const stopped = new Promise<void>((done, fail) => {
    markStopped = done;
    failStopped = fail;
  });
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.split("\n").includes(stop)) markStopped();
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const ended = new Promise<{ outcome: ReplayOutcome | undefined; output: string; signal: NodeJS.Signals | null }>(
    (done) =>
      child.once("exit", (_code, signal) => {
        // Ended without stopping (a no-op once it did stop).
        failStopped(new Error(`the replay process ended before ${stop}: ${output}`));
        const line = output.split("\n").find((l) => l.startsWith("outcome "));
        done({ outcome: line ? JSON.parse(line.slice("outcome ".length)) : undefined, output, signal });
      }),
  );
  return { child, stopped, goOn: () => child.stdin.write("go\n"), ended };
}
