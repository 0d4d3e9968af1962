/**
 * Child processes of the ingress benchmark (bench/ingress.ts): server and load-generator
 * scripts forked with tsx and an IPC channel, their messages awaited, and a bench-owned redis-server.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { resolve } from "node:path";
import { createRedisConnection } from "@wpn/queue";
import { freePort, type TestMerchant } from "@wpn/testing";
import type { GenerateSpec } from "./ingress-loadgen.ts";

const here = import.meta.dirname;

/** The next message of `type` from `child`; rejects on an `error` message or when the child exits first. */
export function nextMessage<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((done, fail) => {
    const cleanup = () => {
      child.off("message", onMessage);
      child.off("exit", onExit);
    };
    const onExit = (code: number | null) => {
      cleanup();
      fail(new Error(`${child.spawnargs.join(" ")} exited with ${code}`));
    };
    const onMessage = (message: { type: string; message?: string }) => {
      if (message.type === "error") {
        cleanup();
        fail(new Error(message.message));
      } else if (message.type === type) {
        cleanup();
        done(message as T);
      }
    };
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

/** Every child started, so that a failed run can kill them (stopped ones included). */
export const children: ChildProcess[] = [];

/** Forks a bench script (tsx, IPC) with `env` added to this process's environment. */
export function spawnChild(script: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = fork(resolve(here, script), args, {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  children.push(child);
  return child;
}

/** A private redis-server (same binary as the shared one) on a free port; killed at the end. */
export async function startRedis(): Promise<{ url: string; stop(): void }> {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: "ignore",
    },
  );
  const url = `redis://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt++) {
    const probe = createRedisConnection(url, "admin", { lazyConnect: true, retryStrategy: () => null });
    probe.on("error", () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      break;
    } catch (error) {
      probe.disconnect();
      if (attempt > 100) throw new Error("redis-server did not start", { cause: error });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { url, stop: () => child.kill("SIGKILL") };
}

/** What the load generator needs to mint notifications WeChat would send `merchant` (signed with its platform key). */
export function generateSpec(merchant: TestMerchant): GenerateSpec {
  return {
    privateKeyPem: merchant.platformPrivateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    apiV3Key: merchant.apiV3Key,
    serial: merchant.publicKeyId,
    mchid: merchant.mchid,
    appid: merchant.appid,
  };
}
