import { type AddressInfo, createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { startRuns } from "./support/start.ts";

// `npm start` (scripts/start.ts) whose apps exit on their configuration: its own exit status follows theirs. Its checks
// before any app starts: test/start-checks.test.ts.

const { startOnce } = startRuns("start-exit");

describe("npm start's exit status follows its apps'", () => {
  it("an app that exits 78 (a configuration fault: its port taken) makes npm start exit 78 too, after stopping the others", async () => {
    const taken = createServer();
    await new Promise<void>((done) => taken.listen(0, "127.0.0.1", done));
    const { port } = taken.address() as AddressInfo;
    try {
      const run = await startOnce({ PORT: String(port) }, 60_000);
      expect(run.output).toContain('"code":"LISTEN_FAILED"');
      expect(run.status, run.output).toBe(78);
      expect(run.output).toContain("ingress exited (code 78); stopping the others.");
    } finally {
      taken.close();
    }
  }, 90_000);

  it("workers exiting 78 on the same refused setting (PG_POOL_MAX under 4, two processes) keep npm start's 78: the second is no failed stop to turn it into 1", async () => {
    const run = await startOnce({ WORKER_PROCESSES: "2", PG_POOL_MAX: "2" }, 60_000);
    // The other worker refuses the setting too, unless the SIGTERM sent to it came first (a race: either way, 78).
    expect(run.output).toContain("configuration error: PG_POOL_MAX (2) must be at least 4");
    expect(run.output).toMatch(/worker-[01] exited \(code 78\); stopping the others\./);
    expect(run.status, run.output).toBe(78);
  }, 90_000);
});
