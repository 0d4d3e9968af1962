import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
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
import { alive, collectOutput, eventually, freePort, processesUnder, repoRoot } from "./support/processes.ts";

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

/** The processes under `root` (children, theirs, …) that run an app's main.ts, from `ps`. */
function appsUnder(root: number): number[] {
  return processesUnder(root, /apps\/[a-z]+\/src\/main\.ts/);
}

/** npm start's environment here: this file's merchant, schema, queue prefix and dashboard login, the apps' `ports`, then `env`. */
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
    DASHBOARD_USERS: `olga:operator:${hashPassword("operator password 1")}`,
    DASHBOARD_SESSION_SECRET: "test-secret-test-secret-test-secret-0123",
    ...env,
  };
}

/**
 * Runs scripts/start.ts as `npm start` does — or, with `viaNpm`, `npm start` itself (npm, its shell, node) —, and
 * resolves once the ingress, the worker and the dashboard answer.
 */
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

/** `ps` lines (pid, parent, state, command) of these processes, for a failure message. */
function psOf(pids: number[]): string {
  if (pids.length === 0) return "(none)";
  return spawnSync("ps", ["-o", "pid=,ppid=,stat=,args=", "-p", pids.join(",")], { encoding: "utf8" }).stdout;
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
  it("prints where each app answers, at HOST: the ingress's notify URL, the dashboard, each worker's health", async () => {
    // Another loopback address (Linux routes all of 127/8 to lo): the apps listen there only, not at 127.0.0.1.
    const started = await start(false, { HOST: "127.0.0.2" });
    try {
      const [port, dashboardPort, workerHealthPort] = started.ports;
      expect(started.output()).toContain(`Ingress:   http://127.0.0.2:${port}/notify/v3`);
      expect(started.output()).toContain(`Dashboard: http://127.0.0.2:${dashboardPort}/`);
      expect(started.output()).toContain(
        `Workers:   1 process(es), health at http://127.0.0.2:${workerHealthPort}/health/ready`,
      );
    } finally {
      const exited = new Promise((done) => started.child.once("exit", done));
      started.child.kill("SIGTERM");
      await exited;
    }
  }, 120_000);

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

  it("stops every app on a SIGINT or SIGTERM sent to the npm process itself, as the README says", async () => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      const started = await start(true);
      const exited = new Promise((done) => started.child.once("exit", () => done(true)));
      // Only npm gets the signal (not its process group, as Ctrl-C in a terminal): npm passes it to its script.
      started.child.kill(signal);
      // Within start.ts's own deadline for the apps (29 s by default) and some; else the apps are stopped here,
      // so that npm ends and the test fails on its assertion rather than its timeout.
      const stopped = await Promise.race([exited, new Promise((done) => setTimeout(() => done(false), 40_000))]);
      if (!stopped) for (const pid of started.pids) process.kill(pid, "SIGTERM");
      await exited;
      expect(stopped, `npm ended on ${signal}; output:\n${started.output()}`).toBe(true);
      for (const port of started.ports) expect(await listening(port)).toBe(false);
      expect(started.output().match(/"msg":"shutting down/g)).toHaveLength(3);
      // Every app process is gone. Allowed a few seconds: the fresh-clone CI on 208cf47 once found one still present
      // right after npm had exited (SIGINT/SIGTERM then passed through npm and tsx's signal relay before start.ts); the
      // timeout message shows what the survivor was (ps), should it ever stay.
      await eventually(
        async () => (started.pids.every((pid) => !alive(pid)) ? true : undefined),
        10_000,
        () => `the app processes to be gone after ${signal}; still there:\n${psOf(started.pids.filter(alive))}`,
      );
    }
  }, 240_000);

  it("Ctrl-C (SIGINT to npm's process group) exits with start.ts's status, as the README says: 0 when every app stopped cleanly, 1 when one did not", async () => {
    for (const freeze of [false, true]) {
      const started = await start(true, {}, true);
      const exited = new Promise<number | null>((done) => started.child.once("exit", (code) => done(code)));
      // The node process running start.ts (not a launcher's) and the apps, held for 300 ms as busy event loops would
      // hold them: tsx's CLI, which `npm start` ran start.ts under, gave its child 30 ms to acknowledge the signal,
      // then SIGKILLed it and exited 130 — the apps' statuses lost, a hung app never killed. start.ts is resumed
      // first, as it would take the signal before the apps finished stopping on theirs.
      const [script] = processesUnder(started.child.pid ?? 0, /--import \S+ scripts\/start\.ts$/);
      const [frozen, ...others] = started.pids;
      if (script === undefined || frozen === undefined) throw new Error("no start.ts or app process");
      for (const pid of [script, ...started.pids]) process.kill(pid, "SIGSTOP");
      process.kill(-(started.child.pid ?? 0), "SIGINT");
      await new Promise((done) => setTimeout(done, 300));
      // Gone when killed meanwhile, as the status below shows.
      for (const pid of [script, ...others, ...(freeze ? [] : [frozen])]) if (alive(pid)) process.kill(pid, "SIGCONT");
      if (freeze) {
        await eventually(
          async () => (started.output().match(/"msg":"shutting down/g)?.length === 2 ? true : undefined),
          15_000,
          () => `the two other apps to shut down; output:\n${started.output()}`,
        );
        process.kill(frozen, "SIGKILL");
      }
      expect(await exited, started.output()).toBe(freeze ? 1 : 0);
    }
  }, 240_000);

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
      async () => ((await Promise.all(started.ports.map(listening))).some(Boolean) ? undefined : true),
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

  it("--help prints the usage and exits 0, starting nothing; any other argument is refused (exit 2)", async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const run = (args: string[]) =>
      spawnSync(process.execPath, ["--import", "tsx", "scripts/start.ts", ...args], {
        cwd: repoRoot,
        env: startEnv(ports, { NODE_ENV: "test" }),
        encoding: "utf8",
        // Before, it started the whole system whatever it was given: stopped (SIGTERM) after this long.
        timeout: 20_000,
      });
    for (const flag of ["--help", "-h"]) {
      const help = run([flag]);
      expect(help.status, `${help.stdout}${help.stderr}`).toBe(0);
      expect(help.stdout).toMatch(/^usage: npm start\n/);
      expect(help.stdout).not.toContain("Ingress:");
      expect(help.stderr).toBe("");
    }
    const refused = run(["--dev"]);
    expect(refused.status, `${refused.stdout}${refused.stderr}`).toBe(2);
    expect(refused.stderr).toMatch(/^START_ARGUMENT_INVALID: .*--dev.*\nusage: npm start\n$/);
    expect(refused.stdout).toBe("");
  }, 90_000);

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

  it("a REDIS_URL that is no URL is a configuration error, its password not printed", () => {
    const password = `redis-pw-${randomBytes(8).toString("hex")}`;
    const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      cwd: repoRoot,
      // Port out of range: WHATWG URL refuses it. Before, the service check's `new URL` threw, and its TypeError was
      // printed whole — with `input: 'redis://:<password>@…'` — and status 1.
      env: { ...process.env, ...merchant.env, REDIS_URL: `redis://:${password}@127.0.0.1:99999` },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(`${run.stdout}${run.stderr}`).not.toContain(password);
    expect(run.status, run.stderr).toBe(78);
    expect(run.stderr).toMatch(/^configuration error: REDIS_URL must be a redis:\/\/ /m);
  });
});

/** scripts/start.ts with `env` over this file's settings (free ports, so apps started by a failing check collide with nothing). */
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

describe("npm start's checks before any app starts", () => {
  it("a Redis that refuses REDIS_URL's login (NOAUTH, WRONGPASS): one line naming REDIS_URL, exit 1, no app started", async () => {
    const redisPort = await freePort();
    const password = `redis-pw-${randomBytes(6).toString("hex")}`;
    const server = spawn(
      "redis-server",
      [
        "--port",
        String(redisPort),
        "--bind",
        "127.0.0.1",
        "--requirepass",
        password,
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      { stdio: "ignore" },
    );
    try {
      await eventually(async () => ((await listening(redisPort)) ? true : undefined), 10_000, "redis-server to listen");
      for (const [url, code] of [
        [`redis://127.0.0.1:${redisPort}`, "NOAUTH"],
        [`redis://:not-${password}@127.0.0.1:${redisPort}`, "WRONGPASS"],
      ] as const) {
        const run = await startOnce({ REDIS_URL: url }, 40_000);
        expect(run.status, run.output).toBe(1);
        expect(run.output).toContain(`Redis at 127.0.0.1:${redisPort} refused REDIS_URL's login (${code})`);
        expect(run.output).not.toContain("Ingress:");
        expect(run.output).not.toContain(password);
      }
    } finally {
      server.kill("SIGKILL");
    }
  }, 120_000);

  it("apps that would listen on one port (a worker's WORKER_HEALTH_PORT + index, PORT, DASHBOARD_PORT): a configuration error naming them, exit 78, no app started", async () => {
    // Each app checks only its own port: the one started second failed LISTEN_FAILED after the others had started.
    // A base of its own for each run: they run at once.
    const cases = [
      [
        (base: number) => ({ WORKER_PROCESSES: "3", PORT: String(base + 2) }),
        /^configuration error: PORT .*WORKER_HEALTH_PORT/m,
      ],
      [
        (base: number) => ({ WORKER_PROCESSES: "2", DASHBOARD_PORT: String(base) }),
        /^configuration error: DASHBOARD_PORT .*WORKER_HEALTH_PORT/m,
      ],
      [
        (base: number) => ({ PORT: String(base + 5), DASHBOARD_PORT: String(base + 5) }),
        /^configuration error: PORT and DASHBOARD_PORT /m,
      ],
      [
        () => ({ WORKER_PROCESSES: "2", WORKER_HEALTH_PORT: "65535" }),
        /^configuration error: WORKER_HEALTH_PORT .*65535/m,
      ],
    ] as const;
    const runs = await Promise.all(
      cases.map(async ([env, line]) => {
        const base = await freePort();
        return { line, run: await startOnce({ WORKER_HEALTH_PORT: String(base), ...env(base) }, 40_000) };
      }),
    );
    for (const { line, run } of runs) {
      expect(run.output, run.output).toMatch(line);
      expect(run.status, run.output).toBe(78);
      expect(run.output).not.toContain("LISTEN_FAILED");
      expect(run.output).not.toContain("Ingress:");
    }
  }, 60_000);

  it("a PostgreSQL that accepts connections but never answers: gives up after 10 s naming DATABASE_URL, exit 1", async () => {
    // Something on the port that takes the connection and says nothing (a hung server, a proxy whose backend is gone).
    const sockets: Socket[] = [];
    const silent = createServer((socket) => {
      sockets.push(socket);
    });
    await new Promise<void>((done) => silent.listen(0, "127.0.0.1", done));
    const { port } = silent.address() as AddressInfo;
    try {
      const run = await startOnce({ DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/wpn_silent` }, 40_000);
      expect(run.status, run.output).toBe(1);
      expect(run.output, run.output).toContain(`PostgreSQL at 127.0.0.1:${port} did not answer within 10 s`);
      expect(run.output).toContain("DATABASE_URL");
      expect(run.output).not.toContain("Ingress:");
      expect(run.ms).toBeLessThan(30_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  }, 60_000);
});
