import { describe, expect, it } from "vitest";
import { forceKillAfterMs, stoppedCleanly } from "../scripts/stopping.ts";

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

  it("counts a non-zero status or a kill as a failed stop", () => {
    expect(stoppedCleanly(0, null)).toBe(true);
    // Still starting when asked, before its handler was installed: nothing to finish.
    expect(stoppedCleanly(null, "SIGTERM")).toBe(true);
    expect(stoppedCleanly(null, "SIGINT")).toBe(true);
    expect(stoppedCleanly(1, null)).toBe(false);
    expect(stoppedCleanly(null, "SIGKILL")).toBe(false);
    expect(stoppedCleanly(null, "SIGSEGV")).toBe(false);
  });
});
