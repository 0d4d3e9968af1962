import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createQueue, createRedisConnection, QueueName } from "@wpn/queue";
import {
  createTestMerchant,
  deletePrefix,
  freePort,
  TEST_REDIS_URL,
  TestRedisServer,
  testQueuePrefix,
  testRsaKeyPair,
} from "@wpn/testing";
import { afterAll, describe, expect, it } from "vitest";
import { startApp } from "../../../test/support/processes.ts";
import { platformCertificate } from "./support/certificate.ts";
import { startFakeWechatApi } from "./support/fake-wechat-api.ts";
import { signedV3 } from "./support/fixture.ts";

const prefix = testQueuePrefix("ingress-main");
let child: ChildProcess | undefined;

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await deletePrefix(prefix);
});

/** Polls GET `url` until it answers 200 (the process must stay up meanwhile). */
async function waitFor200(url: string, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child?.exitCode !== null) throw new Error(`ingress exited early:\n${output()}`);
    const ok = await fetch(url).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`ingress did not answer 200 on ${url}:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts `apps/ingress/src/main.ts` as `npm start` does, with `env` over the test defaults; resolves once ready. */
async function startIngress(env: Record<string, string>): Promise<{ base: string; log: () => string }> {
  const port = await freePort();
  const app = startApp("ingress", {
    LOG_LEVEL: "debug",
    HOST: "127.0.0.1",
    PORT: String(port),
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    // No PostgreSQL at all: notifications need only Redis. The start-up migration check and the merchant registry
    // log a warning, and the default merchant is kept (a database that answers unmigrated would stop the process).
    DATABASE_URL: "postgresql://postgres@127.0.0.1:1/wechatpay_notify_test",
    ...env,
  });
  child = app.child;
  const base = `http://127.0.0.1:${port}`;
  await waitFor200(`${base}/health/live`, app.output);
  // Live comes first; notifications are for a ready process (its Redis connection up), as behind a load balancer.
  await waitFor200(`${base}/health/ready`, app.output);
  return { base, log: app.output };
}

describe("main.ts (real process, real socket)", () => {
  it("listens, answers /health/live, accepts a notification, logs JSON without secrets, exits 0 on SIGTERM", async () => {
    const merchant = createTestMerchant();
    const { base, log: output } = await startIngress(merchant.env);
    const n = signedV3(merchant);
    const response = await fetch(`${base}/notify/v3`, { method: "POST", headers: n.headers, body: n.body });
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    const probe = signedV3(merchant, { probe: true });
    expect(
      (await fetch(`${base}/notify/v3`, { method: "POST", headers: probe.headers, body: probe.body })).status,
    ).toBe(401);

    const admin = createRedisConnection(TEST_REDIS_URL, "admin");
    const queue = createQueue(QueueName.Parse, admin, prefix);
    try {
      expect(await queue.getJob(n.jobId)).toBeDefined();
    } finally {
      await queue.close();
      admin.disconnect();
    }

    const exited = once(child as ChildProcess, "exit");
    child?.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
    const log = output();
    const lines = log.trim().split("\n");
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(log).toContain('"code":"MIGRATIONS_UNCHECKED"');
    // The merchant table could not be read either: logged, and tried again (the environment's merchant needs none).
    expect(log).toContain('"code":"MERCHANTS_UNAVAILABLE"');
    expect(log).toContain('"msg":"ingress listening"');
    expect(log).toContain('"code":"SIGNATURE_PROBE"');
    expect(log).toContain('"msg":"shutdown complete"');
    // Never the signature, the body or key material.
    expect(log).not.toContain(n.headers["Wechatpay-Signature"]);
    expect(log).not.toContain(probe.headers["Wechatpay-Signature"]);
    expect(log).not.toContain("ciphertext");
    expect(log).not.toContain(merchant.apiV3Key);
  });

  it("certificate mode: no public key; downloads platform certificates at start and verifies with them", async () => {
    const merchant = createTestMerchant();
    const { privateKey: certKey } = testRsaKeyPair();
    const cert = { ...platformCertificate(certKey), privateKey: certKey };
    const apiKey = testRsaKeyPair();
    const dir = mkdtempSync(join(tmpdir(), "wpn-main-cert-"));
    const merchantKeyPem = apiKey.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    writeFileSync(join(dir, "apiclient_key.pem"), merchantKeyPem);
    const fake = await startFakeWechatApi(apiKey.publicKey, {
      kind: "list",
      certificates: [cert],
      apiV3Key: merchant.apiV3Key,
    });
    try {
      const { base, log } = await startIngress({
        ...merchant.env,
        // Empty overrides a developer's .env (`npm start` writes one with keys), and counts as unset.
        WECHATPAY_PUBLIC_KEY_ID: "",
        WECHATPAY_PUBLIC_KEY_PATH: "",
        WECHATPAY_PLATFORM_CERT_PATHS: "",
        WECHATPAY_MERCHANT_SERIAL_NO: "3775B6A45ACD588826D15E583A95F5DD1A3F3AA5",
        WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: join(dir, "apiclient_key.pem"),
        WECHATPAY_API_BASE_URL: fake.baseUrl,
      });
      // Ready only once the download brought a key: the downloaded certificate is the only one.
      const ready = (await (await fetch(`${base}/health/ready`)).json()) as { keys: string[] };
      expect(ready.keys).toEqual([cert.serial]);
      expect(fake.requests).toEqual([
        { authorized: true, mchid: merchant.mchid, serialNo: "3775B6A45ACD588826D15E583A95F5DD1A3F3AA5" },
      ]);
      const n = signedV3(merchant, { serial: cert.serial, privateKey: cert.privateKey });
      expect((await fetch(`${base}/notify/v3`, { method: "POST", headers: n.headers, body: n.body })).status).toBe(204);
      const exited = once(child as ChildProcess, "exit");
      child?.kill("SIGTERM");
      expect((await exited)[0]).toBe(0);
      expect(log()).toContain('"msg":"platform certificates downloaded"');
      expect(log()).toContain(cert.serial);
      expect(log()).not.toContain(merchantKeyPem.split("\n")[1]);
    } finally {
      await fake.close();
    }
  });

  it("exits 78 with one line when no way to verify APIv3 signatures is configured (the workers need none)", async () => {
    const app = startApp("ingress", {
      ...createTestMerchant().env,
      // Empty counts as unset, and overrides a developer's .env.
      WECHATPAY_PUBLIC_KEY_ID: "",
      WECHATPAY_PUBLIC_KEY_PATH: "",
      WECHATPAY_PLATFORM_CERT_PATHS: "",
      WECHATPAY_MERCHANT_SERIAL_NO: "",
      WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: "",
    });
    // Bounded: an ingress that accepted the configuration would run until killed.
    const code = await Promise.race([
      once(app.child, "exit").then(([exitCode]) => exitCode as number | null),
      new Promise<string>((r) => setTimeout(() => r("still running after 20 s"), 20_000)),
    ]);
    if (typeof code === "string") app.child.kill("SIGKILL");
    expect(code, app.output()).toBe(78);
    expect(app.output()).toBe(
      "configuration error: WECHATPAY_PUBLIC_KEY_ID is required unless WECHATPAY_PLATFORM_CERT_PATHS or " +
        "certificate download (WECHATPAY_MERCHANT_SERIAL_NO and WECHATPAY_MERCHANT_PRIVATE_KEY_PATH) is configured\n",
    );
  });

  it("exits 0 on SIGTERM while Redis is down (the connection is dropped, not quit)", async () => {
    const merchant = createTestMerchant();
    const redis = await TestRedisServer.start();
    try {
      const { log } = await startIngress({ ...merchant.env, REDIS_URL: redis.url });
      await redis.kill();
      const exited = once(child as ChildProcess, "exit");
      child?.kill("SIGTERM");
      expect((await exited)[0]).toBe(0);
      expect(log()).toContain('"msg":"shutdown complete"');
    } finally {
      await redis.kill();
    }
  });

  it("exits 0 on SIGTERM during start-up (here: the migration check, held by a database that never answers)", async () => {
    const merchant = createTestMerchant();
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const app = startApp("ingress", {
        ...merchant.env,
        HOST: "127.0.0.1",
        PORT: String(await freePort()),
        QUEUE_PREFIX: prefix,
        DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/wechatpay_notify_test`,
      });
      child = app.child;
      const exited = once(app.child, "exit");
      // The ingress is inside its migration check once it has connected.
      await once(silent, "connection");
      app.child.kill("SIGTERM");
      expect((await exited).slice(0, 2), app.output()).toEqual([0, null]);
    } finally {
      silent.close();
    }
  });

  it("a Redis outage is logged as coded one-line warnings, without a stack trace", async () => {
    const merchant = createTestMerchant();
    const redis = await TestRedisServer.start();
    try {
      const { log } = await startIngress({ ...merchant.env, REDIS_URL: redis.url });
      await redis.kill();
      const deadline = Date.now() + 10_000;
      while (!log().includes("queue sample failed") && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      const warnings = log()
        .trim()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { level: number; msg: string; code?: string; err?: { stack?: string } })
        .filter((line) => line.level >= 40);
      const outage = warnings.filter((line) => /redis/.test(line.msg));
      expect(outage.map((line) => line.msg)).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^redis connection closed/),
          expect.stringMatching(/^queue sample failed/),
        ]),
      );
      const uncodedOrTraced = outage.filter((line) => line.code === undefined || line.err?.stack !== undefined);
      expect(
        uncodedOrTraced.map((line) => `${line.msg} (code ${line.code}, stack ${line.err?.stack !== undefined})`),
      ).toEqual([]);
    } finally {
      // The next test takes `child` over, so afterAll would not reach this ingress: it is stopped here.
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGKILL");
        await exited;
      }
      await redis.kill();
    }
  });

  it("exits 0 on SIGTERM while Redis hangs (up, but answering nothing), well before the 10 s deadline", async () => {
    const merchant = createTestMerchant();
    const redis = await TestRedisServer.start();
    const admin = createRedisConnection(redis.url, "admin");
    try {
      const { base, log } = await startIngress({ ...merchant.env, REDIS_URL: redis.url });
      await admin.call("CLIENT", "PAUSE", "15000", "ALL");
      // A notification in flight when the signal comes: it gets its 503 at the enqueue bound.
      const n = signedV3(merchant);
      const pending = fetch(`${base}/notify/v3`, { method: "POST", headers: n.headers, body: n.body });
      await new Promise((r) => setTimeout(r, 200));
      const started = performance.now();
      const exited = once(child as ChildProcess, "exit");
      child?.kill("SIGTERM");
      expect((await exited)[0]).toBe(0);
      expect(performance.now() - started).toBeLessThan(9_500);
      expect((await pending).status).toBe(503);
      expect(log()).toContain('"msg":"shutdown complete"');
    } finally {
      // Paused clients include this one: the server is killed rather than unpaused.
      admin.disconnect();
      await redis.kill();
    }
  });
});
