import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";

const repoRoot = resolve(import.meta.dirname, "../../../..");

export interface WorkerProcess {
  readonly child: ChildProcess;
  /** stdout + stderr so far (JSON log lines). */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node --import tsx apps/worker/src/main.ts` as the root start script does, with `env` on top. */
export function spawnWorker(env: Record<string, string>, index: number): WorkerProcess {
  const child = spawn(process.execPath, ["--import", "tsx", "apps/worker/src/main.ts"], {
    cwd: repoRoot,
    env: { ...process.env, ...env, WORKER_INDEX: String(index) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const append = (chunk: Buffer) => {
    log += chunk.toString();
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("exit", (code, signal) => done({ code, signal })),
  );
  return { child, output: () => log, exited };
}

/** SIGTERM and wait; SIGKILL (and fail the caller's expectations on the exit code) after `graceMs`. */
export async function stopWorker(worker: WorkerProcess, graceMs = 15_000) {
  if (worker.child.exitCode !== null || worker.child.signalCode !== null) return worker.exited;
  worker.child.kill("SIGTERM");
  const timer = setTimeout(() => worker.child.kill("SIGKILL"), graceMs);
  try {
    return await worker.exited;
  } finally {
    clearTimeout(timer);
  }
}
