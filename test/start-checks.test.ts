import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { eventually, freePort, repoRoot } from "./support/processes.ts";
import { listening, startRuns } from "./support/start.ts";

// `npm start` (scripts/start.ts) refusing to run: its arguments, its settings, services that refuse it. An app that
// exits on its configuration: test/start-exit-status.test.ts; scripts/start.ts running the system, and how it stops:
// test/start.test.ts; npm's part: test/start-npm.test.ts.

const { merchant, startEnv, startOnce } = startRuns("start-checks");

describe("npm start's arguments and settings", () => {
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
