import { spawn } from "node:child_process";
import { resolve } from "node:path";

/** Runs the replay CLI as an operator would; its exit code, everything it printed, and what it printed on stdout. */
export async function runReplayCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; stdout: string }> {
  const cli = spawn(process.execPath, ["--import", "tsx", "apps/worker/src/cli/replay.ts", ...args], {
    cwd: resolve(import.meta.dirname, "../../../.."),
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let stdout = "";
  cli.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    stdout += chunk.toString();
  });
  cli.stderr.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  // 'close': after the output streams have ended, not before their last chunk.
  const code = await new Promise<number | null>((done) => cli.once("close", done));
  return { code, out, stdout };
}
