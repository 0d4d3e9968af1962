import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { resolve } from "node:path";

export { freePort } from "@wpn/testing";

export const repoRoot = resolve(import.meta.dirname, "../..");

export interface RunningApp {
  readonly name: string;
  readonly child: ChildProcess;
  /** Everything the process wrote, for assertion messages. */
  output(): string;
  /** SIGTERM, then wait for exit (SIGKILL after `graceMs`). Resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/** Starts one of the apps exactly as `npm start` does: `node --import tsx apps/<name>/src/main.ts`. */
export function startApp(name: "ingress" | "worker" | "dashboard", env: Record<string, string>): RunningApp {
  const child = spawn(process.execPath, ["--import", "tsx", `apps/${name}/src/main.ts`], {
    cwd: repoRoot,
    env: { ...process.env, NODE_ENV: "test", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = collectOutput(child);
  return {
    name,
    child,
    output: log,
    stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
      return new Promise((done) => {
        const force = setTimeout(() => child.kill("SIGKILL"), graceMs);
        child.once("exit", (code) => {
          clearTimeout(force);
          done(code);
        });
        child.kill("SIGTERM");
      });
    },
  };
}

/**
 * Polls `check` every 50 ms until it returns a value other than undefined, or fails after `timeoutMs`. `what` may
 * be a function, read only when the wait fails (e.g. a process's output by then).
 */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string | (() => string),
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves once GET `url` answers 200. */
export function waitForHttp(url: string, app: RunningApp, timeoutMs = 30_000): Promise<true> {
  return eventually(
    async () => {
      if (app.child.exitCode !== null) throw new Error(`${app.name} exited early:\n${app.output()}`);
      const ok = await fetch(url).then(
        (r) => r.status === 200,
        () => false,
      );
      return ok ? true : undefined;
    },
    timeoutMs,
    () => `${url} (${app.name} output so far:\n${app.output()})`,
  );
}

/** The processes under `root` (children, theirs, …) whose command line matches `args`, from `ps`. */
export function processesUnder(root: number, args: RegExp): number[] {
  const rows = spawnSync("ps", ["-eo", "pid=,ppid=,args="], { encoding: "utf8" })
    .stdout.trim()
    .split("\n")
    .map((line) => line.trim().match(/^(\d+)\s+(\d+)\s+(.*)$/))
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), args: m[3] ?? "" }));
  const under = new Set([root]);
  // Parents before children is not guaranteed by ps: repeat until no process joins.
  for (let grew = true; grew; ) {
    grew = false;
    for (const row of rows) {
      if (under.has(row.ppid) && !under.has(row.pid)) {
        under.add(row.pid);
        grew = true;
      }
    }
  }
  return rows.filter((r) => under.has(r.pid) && args.test(r.args)).map((r) => r.pid);
}

/** True while a process with this pid exists (a zombie too). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw error;
  }
}

/** Everything the child writes to stdout and stderr, interleaved as it arrives: read it with the returned function. */
export function collectOutput(child: ChildProcess): () => string {
  let output = "";
  const append = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  return () => output;
}
