import { type ChildProcess, spawn } from "node:child_process";
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
  let log = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  return {
    name,
    child,
    output: () => log,
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
