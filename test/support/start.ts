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
  type TestMerchant,
  testQueuePrefix,
  withSchema,
} from "@wpn/testing";
import pg from "pg";
import { afterAll, expect } from "vitest";
import { collectOutput, eventually, freePort, processesUnder, repoRoot } from "./processes.ts";

// `npm start` itself (scripts/start.ts), run by test/start*.test.ts with the merchant configured by the environment as
// on a server: it writes no .env (test/dev-env.test.ts). Those files run at once, so each makes its own StartRuns: its
// merchant, PostgreSQL schema and queue prefix, shared by its runs, and free ports for each run.

export interface Started {
  child: ChildProcess;
  /** The ingress's, the dashboard's and the worker's health port. */
  ports: number[];
  /** The apps' processes. */
  pids: number[];
  output(): string;
}

export interface StartRuns {
  merchant: TestMerchant;
  /**
   * npm start's environment here: the file's merchant, schema, queue prefix and dashboard login, the apps' `ports`,
   * then `env`.
   */
  startEnv(ports: number[], env: Record<string, string>): NodeJS.ProcessEnv;
  /**
   * Runs scripts/start.ts as `npm start` does — or, with `viaNpm`, `npm start` itself (npm, its shell, node) —, and
   * resolves once the ingress, the worker and the dashboard answer (at env.HOST, else 127.0.0.1).
   */
  start(viaNpm?: boolean, env?: Record<string, string>, ownGroup?: boolean): Promise<Started>;
  /**
   * scripts/start.ts with `env` over the file's settings (free ports, so apps started by a failing check collide with
   * nothing), to its exit (SIGTERM after `timeoutMs`).
   */
  startOnce(
    env: Record<string, string>,
    timeoutMs: number,
  ): Promise<{ status: number | null; output: string; ms: number }>;
}

/** The processes under `root` (children, theirs, …) that run an app's main.ts, from `ps`. */
export function appsUnder(root: number): number[] {
  return processesUnder(root, /apps\/[a-z]+\/src\/main\.ts/);
}

/** `ps` lines (pid, parent, state, command) of these processes, for a failure message. */
export function psOf(pids: number[]): string {
  if (pids.length === 0) return "(none)";
  return spawnSync("ps", ["-o", "pid=,ppid=,stat=,args=", "-p", pids.join(",")], { encoding: "utf8" }).stdout;
}

/** True when something accepts connections on `host`:`port`. */
export function listening(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", () => done(false));
  });
}

/**
 * A test file's npm start runs, named `name` (its schema and queue prefix start with it). Call once, at the file's top
 * level: it registers the afterAll that stops what its runs left running (the start.ts processes, every app process a
 * test saw) and drops the schema and the queue prefix.
 */
export function startRuns(name: string): StartRuns {
  const merchant = createTestMerchant();
  const prefix = testQueuePrefix(name);
  const schema = `${name.replaceAll("-", "_")}_${randomBytes(5).toString("hex")}`;
  // scrypt at its default cost (tens of ms of CPU, blocking): once per file, not once per run.
  const dashboardUsers = `olga:operator:${hashPassword("operator password 1")}`;
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

  function startEnv([port, dashboardPort, workerHealthPort]: number[], env: Record<string, string>): NodeJS.ProcessEnv {
    return {
      ...process.env,
      ...merchant.env,
      DATABASE_URL: withSchema(TEST_DATABASE_BASE_URL, schema),
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      HOST: "127.0.0.1",
      PORT: String(port),
      DASHBOARD_PORT: String(dashboardPort),
      WORKER_HEALTH_PORT: String(workerHealthPort),
      WORKER_PROCESSES: "1",
      DASHBOARD_USERS: dashboardUsers,
      DASHBOARD_SESSION_SECRET: "test-secret-test-secret-test-secret-0123",
      ...env,
    };
  }

  async function start(viaNpm = false, env: Record<string, string> = {}, ownGroup = false): Promise<Started> {
    const host = env.HOST ?? "127.0.0.1";
    const [port, dashboardPort, workerHealthPort] = [await freePort(), await freePort(), await freePort()];
    const [command, args] = viaNpm
      ? ["npm", ["start", "--silent"]]
      : [process.execPath, ["--import", "tsx", "scripts/start.ts"]];
    const child = spawn(command, args, {
      cwd: repoRoot,
      env: startEnv([port, dashboardPort, workerHealthPort], { NODE_ENV: "test", LOG_LEVEL: "info", ...env }),
      stdio: ["ignore", "pipe", "pipe"],
      // In a process group of its own, as in a terminal: Ctrl-C is a SIGINT to the whole group.
      detached: ownGroup,
    });
    runs.push(child);
    const log = collectOutput(child);
    const ports = [port, dashboardPort, workerHealthPort];
    for (const p of ports) {
      await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`npm start exited early:\n${log()}`);
          return (
            (await fetch(`http://${host}:${p}/health/live`).then(
              (r) => r.ok,
              () => false,
            )) || undefined
          );
        },
        60_000,
        () => `port ${p} to answer; npm start's output:\n${log()}`,
      );
    }
    // The apps (ingress, worker, dashboard): the processes under it that run an app's main.ts (tsx runs esbuild too).
    const pids = appsUnder(child.pid ?? 0);
    expect(pids).toHaveLength(3);
    for (const pid of pids) seen.add(pid);
    return { child, ports, pids, output: log };
  }

  async function startOnce(env: Record<string, string>, timeoutMs: number) {
    const ports = [await freePort(), await freePort(), await freePort()];
    const child = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      cwd: repoRoot,
      env: startEnv(ports, env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    runs.push(child);
    const output = collectOutput(child);
    const started = Date.now();
    const status = await new Promise<number | null>((done) => {
      const timer = setTimeout(() => {
        for (const pid of appsUnder(child.pid ?? 0)) seen.add(pid);
        child.kill("SIGTERM");
      }, timeoutMs);
      child.once("exit", (code) => {
        clearTimeout(timer);
        done(code);
      });
    });
    return { status, output: output(), ms: Date.now() - started };
  }

  return { merchant, startEnv, start, startOnce };
}
