import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testRsaKeyPair } from "@wpn/testing";
import { main } from "../../src/cli.ts";
import { generateSimKeys, type SimKeys } from "../../src/keys.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a wechatpay-sim command line in-process with captured output. */
export async function runSim(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; signal?: AbortSignal; tty?: boolean } = {},
): Promise<RunResult> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s), isTTY: opts.tty ?? false },
    env: opts.env ?? {},
    cwd: opts.cwd ?? tmpdir(),
    signal: opts.signal ?? new AbortController().signal,
  });
  return { code, stdout, stderr };
}

/** A fresh keys folder in a temporary directory, its two RSA pairs drawn from the run's shared ones. */
export function tempKeys(options: { mchid?: string; appid?: string } = {}): {
  keys: SimKeys;
  dir: string;
  cleanup(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), "wpn-sim-"));
  const keyPairs = { publicKey: testRsaKeyPair(), certificate: testRsaKeyPair() };
  const keys = generateSimKeys(join(dir, "keys"), { ...options, keyPairs });
  return { keys, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
