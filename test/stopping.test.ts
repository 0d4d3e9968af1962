import { describe, expect, it } from "vitest";
import { forceKillAfterMs, statusAfterFailedStop, stoppedCleanly, stoppedOnSignal } from "../scripts/stopping.ts";

// How npm start ends its apps. It used to kill them 30 s after SIGTERM whatever WORKER_SHUTDOWN_TIMEOUT_MS said (up to
// 120 s: a worker was killed within the grace it was given), and Ctrl-C exited 0 even when an app failed its shutdown.
describe("npm start stopping its apps", () => {
  it("kills only past the longest shutdown the apps' own bounds allow, with a margin", () => {
    // A worker: its jobs' grace, then four closing steps of at most 1 s.
    expect(forceKillAfterMs(120_000)).toBeGreaterThan(120_000 + 4_000);
    expect(forceKillAfterMs(60_000)).toBeGreaterThan(60_000 + 4_000);
    // The ingress's and the dashboard's own deadlines are 10 s, whatever the worker's.
    expect(forceKillAfterMs(100)).toBeGreaterThan(10_000);
    // The default (10 s) keeps about the bound it had.
    expect(forceKillAfterMs(10_000)).toBeGreaterThanOrEqual(25_000);
  });

  it("an app that fails its stop makes the status 1, but never lowers the 78 of another app's configuration fault", () => {
    // Ctrl-C with an app that failed its shutdown: 1.
    expect(statusAfterFailedStop(0)).toBe(1);
    expect(statusAfterFailedStop(1)).toBe(1);
    // A worker exited 78 (PG_POOL_MAX under 4) and the next worker, stopping, exits 78 on the same setting: still 78.
    // It was set to 1, and a supervisor restarted a configuration to fix.
    expect(statusAfterFailedStop(78)).toBe(78);
  });

  it("counts a non-zero status or a kill as a failed stop", () => {
    expect(stoppedCleanly(0, null)).toBe(true);
    // Still starting when asked, before its handler was installed: nothing to finish.
    expect(stoppedCleanly(null, "SIGTERM")).toBe(true);
    expect(stoppedCleanly(null, "SIGINT")).toBe(true);
    expect(stoppedCleanly(1, null)).toBe(false);
    expect(stoppedCleanly(null, "SIGKILL")).toBe(false);
    expect(stoppedCleanly(null, "SIGSEGV")).toBe(false);
  });

  it("counts an app that stopped cleanly on a signal sent to it, before it was asked, as a stop; any other end as a crash", () => {
    // Done stopping on Ctrl-C's SIGINT before start.ts took its own: status 0 after reporting the signal.
    expect(stoppedOnSignal(0, null, "SIGINT")).toBe("SIGINT");
    expect(stoppedOnSignal(0, null, "SIGTERM")).toBe("SIGTERM");
    // Ended by the signal itself, its handler not installed yet.
    expect(stoppedOnSignal(null, "SIGINT", undefined)).toBe("SIGINT");
    expect(stoppedOnSignal(null, "SIGTERM", undefined)).toBe("SIGTERM");
    // Status 0 with no signal around: it ended on its own.
    expect(stoppedOnSignal(0, null, undefined)).toBeUndefined();
    // A failed shutdown after the signal, a crash, a configuration fault, a kill.
    expect(stoppedOnSignal(1, null, "SIGINT")).toBeUndefined();
    expect(stoppedOnSignal(1, null, undefined)).toBeUndefined();
    expect(stoppedOnSignal(78, null, undefined)).toBeUndefined();
    expect(stoppedOnSignal(null, "SIGKILL", "SIGINT")).toBeUndefined();
    expect(stoppedOnSignal(null, "SIGKILL", undefined)).toBeUndefined();
  });
});
