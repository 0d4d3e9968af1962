import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { hashPassword } from "@wpn/dashboard/password";
import { parseDatabaseUrl, quoteIdent } from "@wpn/db";
import {
  createTestMerchant,
  deletePrefix,
  TEST_DATABASE_BASE_URL,
  TEST_REDIS_URL,
  testQueuePrefix,
  withSchema,
} from "@wpn/testing";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { eventually, freePort, repoRoot } from "./support/processes.ts";

// `npm start` itself (scripts/start.ts), with the merchant configured by the environment as on a server: it writes no
// .env (test/dev-env.test.ts), and the three apps it starts must not outlive it.

const merchant = createTestMerchant();
const prefix = testQueuePrefix("start");
const schema = `start_${randomBytes(5).toString("hex")}`;
/** The start.ts processes, and every app process a test saw: stopped at the end if one still runs. */
const runs: ChildProcess[] = [];
const seen = new Set<number>();

afterAll(async () => {
  for (const run of runs.filter((r) => r.exitCode === null && r.signalCode === null)) {
    const exited = new Promise((done) => run.once("exit", done));
    run.kill("SIGTERM");
    await exited;
  }
  for (const pid of seen) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }
  const client = new pg.Client({ connectionString: parseDatabaseUrl(TEST_DATABASE_BASE_URL).connectionString });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  await client.end();
  await deletePrefix(prefix);
});

interface Started {
  child: ChildProcess;
  /** The ingress's, the dashboard's and the worker's health port. */
  ports: number[];
  /** The apps' processes. */
  pids: number[];
  output(): string;
}

/** Runs scripts/start.ts as `npm start` does, and resolves once the ingress, the worker and the dashboard answer. */
async function start(): Promise<Started> {
  const [port, dashboardPort, workerHealthPort] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
    cwd: repoRoot,
    env: {
      ...process.env,
      ...merchant.env,
      NODE_ENV: "test",
      LOG_LEVEL: "info",
      DATABASE_URL: withSchema(TEST_DATABASE_BASE_URL, schema),
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      HOST: "127.0.0.1",
      PORT: String(port),
      DASHBOARD_PORT: String(dashboardPort),
      WORKER_HEALTH_PORT: String(workerHealthPort),
      WORKER_PROCESSES: "1",
      DASHBOARD_USERS: `olga:operator:${hashPassword("operator password 1")}`,
      DASHBOARD_SESSION_SECRET: "test-secret-test-secret-test-secret-0123",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  runs.push(child);
  let log = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  const ports = [port, dashboardPort, workerHealthPort];
  for (const p of ports) {
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`npm start exited early:\n${log}`);
        return (
          (await fetch(`http://127.0.0.1:${p}/health/live`).then(
            (r) => r.ok,
            () => false,
          )) || undefined
        );
      },
      60_000,
      () => `port ${p} to answer; npm start's output:\n${log}`,
    );
  }
  // The apps (ingress, worker, dashboard): start.ts's children that run an app's main.ts (tsx runs esbuild too).
  const pgrep = ["-P", String(child.pid), "-f", "apps/[a-z]+/src/main\\.ts"];
  const pids = spawnSync("pgrep", pgrep, { encoding: "utf8" }).stdout.trim().split("\n");
  expect(pids).toHaveLength(3);
  for (const pid of pids) seen.add(Number(pid));
  return { child, ports, pids: pids.map(Number), output: () => log };
}

/** True when something accepts connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", () => done(false));
  });
}

describe("npm start", () => {
  it("writes no .env for a merchant the environment configures, and says so", async () => {
    const started = await start();
    expect(started.output()).toContain(
      `No development settings written to .env: the environment configures merchant WECHATPAY_MCHID=${merchant.mchid}`,
    );
    expect(started.output()).not.toContain("Dashboard login:");
    // SIGTERM (as Ctrl-C): every app stops cleanly, and so npm start exits 0.
    const exited = new Promise<number | null>((done) => started.child.once("exit", (code) => done(code)));
    started.child.kill("SIGTERM");
    expect(await exited).toBe(0);
    for (const port of started.ports) expect(await listening(port)).toBe(false);
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
      async () => ((await Promise.all(started.ports.map(listening))).some(Boolean) ? undefined : true),
      30_000,
      () => `ports ${started.ports.join(", ")} to be free; output:\n${started.output()}`,
    );
    await eventually(
      async () => (started.output().match(/its IPC channel closed/g)?.length === 3 ? true : undefined),
      5_000,
      () => `three apps to say why they stop; output:\n${started.output()}`,
    );
    expect(started.output()).toContain("shutdown complete");
    expect(started.output()).toContain("worker stopped");
  }, 120_000);

  it("exits 78 on a configuration error, as the apps and the README say", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      cwd: repoRoot,
      // The merchant set by the environment: no .env is written into the checkout.
      env: { ...process.env, ...merchant.env, DATABASE_URL: "mysql://127.0.0.1:3306/shop" },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(run.status, run.stderr).toBe(78);
    expect(run.stderr).toMatch(/^configuration error: DATABASE_URL must be a postgresql:\/\/ /m);
  });
});
