import { spawn } from "node:child_process";
import { resolve } from "node:path";

/** Runs the replay CLI as an operator would; its exit code and everything it printed. */
export async function runReplayCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string }> {
  const cli = spawn(process.execPath, ["--import", "tsx", "apps/worker/src/cli/replay.ts", ...args], {
    cwd: resolve(import.meta.dirname, "../../../.."),
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const collect = (chunk: Buffer) => {
    out += chunk.toString();
  };
  cli.stdout.on("data", collect);
  cli.stderr.on("data", collect);
  const code = await new Promise<number | null>((done) => cli.once("exit", done));
  return { code, out };
}
