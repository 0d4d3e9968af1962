import { beforeAll, describe, expect, it } from "vitest";
import { alive, eventually } from "./support/processes.ts";
import { listening, type Started, startRuns } from "./support/start.ts";

// `npm start` run as its script runs (scripts/start.ts under tsx): what it prints, and how it and its three apps stop —
// on a signal, when an app crashes or fails its stop, when it is killed itself. npm's part (the signals it passes on,
// Ctrl-C to its group): test/start-npm.test.ts; the refusals before or while the apps start: test/start-checks.test.ts.

const { merchant, start } = startRuns("start");

describe("npm start", () => {
  // One system for what only reads its output, then stopped by the last case: each start is ~8 s of CPU (start.ts and
  // three apps loading under tsx).
  describe("started at another HOST, then stopped with SIGTERM", () => {
    let started: Started;
    beforeAll(async () => {
      // Another loopback address (Linux routes all of 127/8 to lo): the apps listen there only, not at 127.0.0.1.
      started = await start(false, { HOST: "127.0.0.2" });
    }, 120_000);

    it("prints where each app answers, at HOST: the ingress's notify URL, the dashboard, each worker's health", () => {
      const [port, dashboardPort, workerHealthPort] = started.ports;
      expect(started.output()).toContain(`Ingress:   http://127.0.0.2:${port}/notify/v3`);
      expect(started.output()).toContain(`Dashboard: http://127.0.0.2:${dashboardPort}/`);
      expect(started.output()).toContain(
        `Workers:   1 process(es), health at http://127.0.0.2:${workerHealthPort}/health/ready`,
      );
    });

    it("writes no .env for a merchant the environment configures, and says so", () => {
      expect(started.output()).toContain(
        `No development settings written to .env: the environment configures merchant WECHATPAY_MCHID=${merchant.mchid}`,
      );
      expect(started.output()).not.toContain("Dashboard login:");
    });

    it("SIGTERM (as Ctrl-C): every app stops cleanly, and so npm start exits 0, its ports free", async () => {
      const exited = new Promise<number | null>((done) => started.child.once("exit", (code) => done(code)));
      started.child.kill("SIGTERM");
      expect(await exited).toBe(0);
      for (const port of started.ports) expect(await listening(port, "127.0.0.2")).toBe(false);
    }, 60_000);
  });

  it("Ctrl-C on a busy machine: an app that stopped on the SIGINT before start.ts took its own is a stop, not a crash (exit 0)", async () => {
    const started = await start();
    const exited = new Promise<number | null>((done) => started.child.once("exit", (code) => done(code)));
    // The terminal's SIGINT reaches every process of the group; here the apps take it first and one of them has
    // stopped cleanly, and start.ts has seen it exit (and reaped it), before start.ts handles its own.
    for (const pid of started.pids) process.kill(pid, "SIGINT");
    await eventually(
      async () => (started.pids.some((pid) => !alive(pid)) ? true : undefined),
      20_000,
      () => `an app to have stopped and been reaped; output:\n${started.output()}`,
    );
    started.child.kill("SIGINT");
    expect(await exited, started.output()).toBe(0);
    expect(started.output()).not.toMatch(/exited \(code 0\); stopping the others/);
    expect(started.output()).toMatch(/(ingress|worker-0|dashboard) stopped on SIGINT/);
  }, 120_000);

  it("an app killed on its own (SIGKILL: the OOM killer) is a crash: the others are stopped, exit 1", async () => {
    const started = await start();
    const exited = new Promise<number | null>((done) => started.child.once("exit", (code) => done(code)));
    const [killed] = started.pids;
    if (killed === undefined) throw new Error("no app process");
    process.kill(killed, "SIGKILL");
    expect(await exited, started.output()).toBe(1);
    expect(started.output()).toMatch(/exited \(SIGKILL\); stopping the others/);
    expect(started.output().match(/"msg":"shutting down/g)).toHaveLength(2);
  }, 120_000);

  it("exits non-zero when an app does not stop cleanly", async () => {
    const started = await start();
    // One app frozen (SIGSTOP) cannot take its SIGTERM; it is killed while npm start waits for the apps to stop.
    const [frozen] = started.pids;
    if (frozen === undefined) throw new Error("no app process");
    process.kill(frozen, "SIGSTOP");
    const exited = new Promise<number | null>((done) => started.child.once("exit", (code) => done(code)));
    started.child.kill("SIGTERM");
    await eventually(
      async () => (started.output().match(/"msg":"shutting down/g)?.length === 2 ? true : undefined),
      15_000,
      () => `the two other apps to shut down; output:\n${started.output()}`,
    );
    process.kill(frozen, "SIGKILL");
    expect(await exited).toBe(1);
    expect(started.output()).toMatch(/did not stop cleanly \(SIGKILL\)/);
  }, 120_000);

  it("leaves no app running, nor holding its port, when it is killed (kill -9, the OOM killer)", async () => {
    const started = await start();
    started.child.kill("SIGKILL");
    // Each app shuts down as on SIGTERM and frees its port: the next npm start can listen there.
    await eventually(
      async () => ((await Promise.all(started.ports.map((port) => listening(port)))).some(Boolean) ? undefined : true),
      30_000,
      () => `ports ${started.ports.join(", ")} to be free; output:\n${started.output()}`,
    );
    await eventually(
      async () => (started.output().match(/its IPC channel closed/g)?.length === 3 ? true : undefined),
      5_000,
      () => `three apps to say why they stop; output:\n${started.output()}`,
    );
    // The ports close before each app has finished stopping (the ingress logs "shutdown complete" after it closed
    // its server and its Redis connection): a check right after the ports are free raced that line.
    await eventually(
      async () =>
        started.output().includes("shutdown complete") && started.output().includes("worker stopped")
          ? true
          : undefined,
      10_000,
      () => `the ingress and the worker to finish stopping; output:\n${started.output()}`,
    );
  }, 120_000);
});
