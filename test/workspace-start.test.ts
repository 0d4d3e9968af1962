import { type ChildProcess, spawn } from "node:child_process";
import { createTestDatabase, createTestMerchant, deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { afterAll, describe, expect, it } from "vitest";
import { alive, collectOutput, eventually, freePort, processesUnder, repoRoot } from "./support/processes.ts";

// One app started through its workspace's script, as the dashboard's README documents (`npm start -w @wpn/dashboard`),
// then stopped as a supervisor stops the process it started: SIGTERM to that process alone (Docker's PID 1, a
// `kill <pid>`). npm passes the signal to the script's shell; a shell that had not `exec`ed the app died of it and left
// the app running, orphaned, still holding its port.

const merchant = createTestMerchant();
const prefix = testQueuePrefix("wsstart");
const database = await createTestDatabase("wsstart");
/** Every app process a test saw: killed at the end should one outlive its test. */
const seen = new Set<number>();

afterAll(async () => {
  for (const pid of seen) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }
  await database.drop();
  await deletePrefix(prefix);
});

function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((done) => child.once("exit", (code) => done(code)));
}

describe.each([
  { workspace: "@wpn/dashboard", portSetting: "DASHBOARD_PORT" },
  { workspace: "@wpn/worker", portSetting: "WORKER_HEALTH_PORT" },
])("npm start -w $workspace", ({ workspace, portSetting }) => {
  it("stops the app when npm alone gets SIGTERM", async () => {
    const port = await freePort();
    const child = spawn("npm", ["start", "--silent", "-w", workspace], {
      cwd: repoRoot,
      env: {
        ...process.env,
        ...merchant.env,
        NODE_ENV: "test",
        LOG_LEVEL: "warn",
        DATABASE_URL: database.url,
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: prefix,
        HOST: "127.0.0.1",
        [portSetting]: String(port),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const log = collectOutput(child);
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`npm start -w ${workspace} exited early:\n${log()}`);
        const up = await fetch(`http://127.0.0.1:${port}/health/live`).then(
          (r) => r.ok,
          () => false,
        );
        return up || undefined;
      },
      60_000,
      () => `${workspace} to answer; its output:\n${log()}`,
    );
    const [app] = processesUnder(child.pid ?? 0, /--import \S+ apps\/[a-z]+\/src\/main\.ts$/);
    expect(app, `no app process under npm:\n${log()}`).toBeDefined();
    seen.add(app as number);

    child.kill("SIGTERM");
    const npmStatus = await exitOf(child);
    const gone = await eventually(
      async () => (alive(app as number) ? undefined : true),
      20_000,
      () => `the app (pid ${app}) to exit after npm's SIGTERM; output:\n${log()}`,
    ).catch(() => false);

    expect({ appExited: gone, npmStatus }).toEqual({ appExited: true, npmStatus: 0 });
  }, 120_000);
});
