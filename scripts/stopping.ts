// How `npm start` judges its apps' shutdown: how long it lets them take before it kills them, and whether each stopped
// cleanly (its own exit status says whether `npm start` did).
import { APP_SHUTDOWN_DEADLINE_MS, WORKER_CLOSE_STEP_MS, WORKER_CLOSE_STEPS } from "@wpn/config";

/** Beyond the longest bound: a loaded machine, log lines still being written, ms. */
const KILL_MARGIN_MS = 15_000;

/**
 * When `npm start` kills (SIGKILL) the apps still running after it asked them to stop, ms after asking: past the
 * longest shutdown their own bounds allow — a worker's WORKER_SHUTDOWN_TIMEOUT_MS (up to 120 s) and closing — plus a
 * margin. A fixed 30 s killed a worker still within a longer configured grace, jobs and all.
 */
export function forceKillAfterMs(workerShutdownTimeoutMs: number): number {
  return (
    Math.max(APP_SHUTDOWN_DEADLINE_MS, workerShutdownTimeoutMs + WORKER_CLOSE_STEPS * WORKER_CLOSE_STEP_MS) +
    KILL_MARGIN_MS
  );
}

/**
 * Whether an app that exited while `npm start` was stopping them stopped cleanly: status 0, or ended by the SIGTERM
 * or SIGINT it was sent before it installed its handler (still starting: nothing to finish). A non-zero status (a
 * shutdown that failed or passed its deadline) or SIGKILL (killed at `forceKillAfterMs`) is a failed stop.
 */
export function stoppedCleanly(code: number | null, signal: NodeJS.Signals | null): boolean {
  return code === 0 || signal === "SIGTERM" || signal === "SIGINT";
}

/**
 * The signal an app that exited before `npm start` asked it to stop was itself sent, when it stopped cleanly on it:
 * Ctrl-C reaches every process of the terminal's group, and an app may be done before start.ts takes its own SIGINT.
 * `reported` is the signal the app said its shutdown began on (reportStopSignal of @wpn/config); an app that had not
 * installed its handler yet ends by the signal itself. Undefined for an app that ended on its own — status 0 without
 * a signal reported, a non-zero status, SIGKILL (the OOM killer) — or failed the stop it was asked for: a crash.
 */
export function stoppedOnSignal(
  code: number | null,
  signal: NodeJS.Signals | null,
  reported: "SIGINT" | "SIGTERM" | undefined,
): "SIGINT" | "SIGTERM" | undefined {
  if (signal === "SIGINT" || signal === "SIGTERM") return signal;
  return code === 0 ? reported : undefined;
}

/**
 * `npm start`'s exit status once an app failed the stop it was asked for (a non-zero status, SIGKILL): at least 1, and
 * never lower than the status already decided. The 78 of an app's configuration fault stays when the others then end
 * on the same fault (every worker of WORKER_PROCESSES refuses PG_POOL_MAX): set to 1, it told a supervisor to restart
 * a configuration to fix.
 */
export function statusAfterFailedStop(current: number): number {
  return Math.max(current, 1);
}
