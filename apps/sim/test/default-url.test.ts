import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultNotifyUrl } from "../src/commands/send.ts";
import { UsageError } from "../src/io.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

// Without --url the simulator posts to the ingress of `npm start` on this machine, on the PORT the ingress listens
// on: the same environment and .env it reads DATABASE_URL from. With PORT=3310 in .env it used to seed the order
// into the configured database and post to :3000.
const repo = fileURLToPath(new URL("../../..", import.meta.url));
const temp = tempKeys();
let receiver: Receiver;
let port: string;

beforeAll(async () => {
  receiver = await startReceiver({ keys: temp.keys });
  port = new URL(receiver.v3).port;
});
afterAll(async () => {
  await receiver.close();
  temp.cleanup();
});

/** The receiver's requests from `from` on. */
const since = (from: number) => receiver.received.slice(from);

describe("default notify URL", () => {
  it("is 127.0.0.1 on PORT, else 3000", () => {
    expect(defaultNotifyUrl("v3", {})).toBe("http://127.0.0.1:3000/notify/v3");
    expect(defaultNotifyUrl("v2", { PORT: "" })).toBe("http://127.0.0.1:3000/notify/v2");
    expect(defaultNotifyUrl("v3", { PORT: "3310" })).toBe("http://127.0.0.1:3310/notify/v3");
    expect(defaultNotifyUrl("v2", { PORT: "3310" })).toBe("http://127.0.0.1:3310/notify/v2");
    // 0 is "any free port" for the ingress: nothing to connect to.
    for (const bad of ["0", "70000", "3310x", " 3310", "-1"]) {
      expect(() => defaultNotifyUrl("v3", { PORT: bad }), bad).toThrow(UsageError);
    }
  });

  it("pay, pay --v2, refund, close --then-pay, load and scenario post to PORT without --url", async () => {
    const env = { PORT: port };
    const keys = ["--keys", temp.keys.dir];
    let from = receiver.received.length;
    const pay = await runSim(["pay", ...keys, "--no-retry", "--out-trade-no", "port-001"], { env });
    expect(pay.code, pay.stdout + pay.stderr).toBe(0);
    expect(pay.stdout).toContain(`→ POST http://127.0.0.1:${port}/notify/v3`);
    const v2 = await runSim(["pay", ...keys, "--no-retry", "--v2", "--out-trade-no", "port-002"], { env });
    expect(v2.code, v2.stdout + v2.stderr).toBe(0);
    const refund = await runSim(["refund", ...keys, "--no-retry", "--out-trade-no", "port-001"], { env });
    expect(refund.code, refund.stdout + refund.stderr).toBe(0);
    const close = await runSim(["close", ...keys, "--no-retry", "--out-trade-no", "port-003", "--then-pay"], { env });
    expect(close.code, close.stdout + close.stderr).toBe(0);
    expect(since(from).map((r) => r.path)).toEqual(["/notify/v3", "/notify/v2", "/notify/v3", "/notify/v3"]);
    expect(since(from).every((r) => r.error === undefined)).toBe(true);

    from = receiver.received.length;
    const load = await runSim(["load", ...keys, "--count", "3"], { env });
    expect(load.code, load.stdout + load.stderr).toBe(0);
    expect(since(from).map((r) => r.path)).toEqual(["/notify/v3", "/notify/v3", "/notify/v3"]);

    from = receiver.received.length;
    const scenario = await runSim(["scenario", "probe", ...keys], { env });
    expect(scenario.code, scenario.stdout + scenario.stderr).toBe(0);
    expect(since(from).length).toBeGreaterThan(0);
    expect(since(from).every((r) => r.path === "/notify/v3")).toBe(true);
  });

  it("--url wins over PORT, and a PORT that is no port is a usage error without it", async () => {
    const keys = ["--keys", temp.keys.dir];
    const given = await runSim(["pay", ...keys, "--no-retry", "--url", receiver.v3], { env: { PORT: "0" } });
    expect(given.code, given.stderr).toBe(0);
    const bad = await runSim(["pay", ...keys, "--no-retry"], { env: { PORT: "0" } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('PORT (environment or .env) must be a port number 1-65535, got "0"');
  });

  it("reads PORT from .env in the working directory, like DATABASE_URL", async () => {
    writeFileSync(join(temp.dir, ".env"), `PORT=${port}\nWECHATPAY_SIM_KEYS=${temp.keys.dir}\n`);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of ["PORT", "DATABASE_URL", "WECHATPAY_SIM_KEYS"]) delete env[name];
    const from = receiver.received.length;
    // `npx wechatpay-sim` in the folder of the .env; asynchronous: the receiver answers from this event loop.
    const result = await new Promise<{ code: number | null; output: string }>((done) => {
      const child = spawn(
        process.execPath,
        [join(repo, "apps/sim/bin/wechatpay-sim.js"), "pay", "--no-retry", "--out-trade-no", "port-env"],
        { cwd: temp.dir, env },
      );
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.on("close", (code) => done({ code, output }));
    });
    expect(result.code, result.output).toBe(0);
    expect(since(from).map((r) => r.path)).toEqual(["/notify/v3"]);
  });
});
