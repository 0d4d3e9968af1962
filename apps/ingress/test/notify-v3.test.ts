import { randomUUID } from "node:crypto";
import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { createRedisConnection, PARSE_JOB_NAME, parseJobV3Schema, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { Worker } from "bullmq";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

let f: IngressFixture;

beforeAll(async () => {
  f = await createIngressFixture({ label: "ingress-v3" });
});
afterAll(async () => {
  await f?.close();
});

const fail = (message: string) => JSON.stringify({ code: "FAIL", message });

describe("POST /notify/v3: accepted notifications", () => {
  it("answers 204 with an empty body only once the job is in Redis, jobId = notification id", async () => {
    const n = signedV3(f.merchant);
    const response = await post(f.app, "/notify/v3", n);
    expect(response.statusCode).toBe(204);
    expect(response.body).toBe("");
    const job = await f.queue.getJob(n.jobId);
    expect(job?.name).toBe(PARSE_JOB_NAME);
    const data = parseJobV3Schema.parse(job?.data);
    // The raw body byte-for-byte (still encrypted), the verified headers without the signature.
    expect(data).toMatchObject({ v: 1, api: "v3", id: n.jobId, mchid: f.merchant.mchid });
    expect(Buffer.from(data.body, "utf8").equals(n.body)).toBe(true);
    expect(data.headers).toEqual({
      timestamp: n.headers["Wechatpay-Timestamp"],
      nonce: n.headers["Wechatpay-Nonce"],
      serial: f.merchant.publicKeyId,
      signatureType: "WECHATPAY2-SHA256-RSA2048",
    });
    expect(JSON.stringify(data)).not.toContain(n.headers["Wechatpay-Signature"]);
    await vi.waitFor(async () => expect(await f.receipt(n.jobId)).toMatchObject({ count: 1 }));
  });

  it("accepts `application/json; charset=utf-8`", async () => {
    const n = signedV3(f.merchant);
    const response = await post(f.app, "/notify/v3", {
      ...n,
      headers: { ...n.headers, "Content-Type": "application/json; charset=utf-8" },
    });
    expect(response.statusCode).toBe(204);
  });

  it("answers a redelivery with 204 and no second job, also after the first job was completed and removed", async () => {
    const n = signedV3(f.merchant);
    expect((await post(f.app, "/notify/v3", n)).statusCode).toBe(204);
    // A real worker completes the job; then it is removed, so BullMQ's own jobId dedupe no longer applies.
    const worker = new Worker(QueueName.Parse, async () => "ok", {
      connection: createRedisConnection(TEST_REDIS_URL, "worker"),
      prefix: f.prefix,
    });
    try {
      const deadline = Date.now() + 10_000;
      while (!(await (await f.queue.getJob(n.jobId))?.isCompleted())) {
        if (Date.now() > deadline) throw new Error("worker did not complete the job");
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await worker.close();
    }
    expect(await (await f.queue.getJob(n.jobId))?.isCompleted()).toBe(true);
    await (await f.queue.getJob(n.jobId))?.remove();
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();

    const again = await post(f.app, "/notify/v3", n);
    expect(again.statusCode).toBe(204);
    expect(again.body).toBe("");
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();
    // Receipts are written after the answer (the job is already durable), so wait for the write to land.
    const receipt = await vi.waitFor(async () => {
      const r = await f.receipt(n.jobId);
      expect(r?.count).toBe(2);
      return r;
    });
    expect(receipt?.last).toBeGreaterThanOrEqual(receipt?.first ?? Number.POSITIVE_INFINITY);
    const ttl = await f.admin.ttl(`${f.prefix}:receipt:${n.jobId}`);
    expect(ttl).toBeGreaterThan(25 * 3600 - 60);
  });

  it("collapses 100 concurrent deliveries of one notification into exactly one job", async () => {
    const n = signedV3(f.merchant);
    const before = await f.jobsEverAdded();
    const responses = await Promise.all(Array.from({ length: 100 }, () => post(f.app, "/notify/v3", n)));
    expect(responses.map((r) => r.statusCode)).toEqual(Array(100).fill(204));
    expect((await f.jobsEverAdded()) - before).toBe(1);
    await vi.waitFor(async () => expect((await f.receipt(n.jobId))?.count).toBe(100));
  });

  it("batches concurrent distinct notifications into addBulk and acknowledges each", async () => {
    const notifications = Array.from({ length: 40 }, () => signedV3(f.merchant));
    const responses = await Promise.all(notifications.map((n) => post(f.app, "/notify/v3", n)));
    expect(responses.map((r) => r.statusCode)).toEqual(Array(40).fill(204));
    const jobs = await Promise.all(notifications.map((n) => f.queue.getJob(n.jobId)));
    expect(jobs.every((job) => job !== undefined)).toBe(true);
    const metrics = await f.app.ingress.metrics.registry.getSingleMetricAsString("wpn_ingress_enqueue_batch_size");
    // At least one bulk carried more than one job (inject delivers all 40 in the same turn of the loop).
    const count = Number(/wpn_ingress_enqueue_batch_size_count (\d+)/.exec(metrics)?.[1]);
    const sum = Number(/wpn_ingress_enqueue_batch_size_sum (\d+)/.exec(metrics)?.[1]);
    expect(sum / count).toBeGreaterThan(1);
  });
});

describe("POST /notify/v3: rejections answer 4xx with the exact FAIL body and enqueue nothing", () => {
  async function expectNothingEnqueuedFor(run: () => Promise<void>) {
    const before = await f.jobsEverAdded();
    const receiptsBefore = (await f.admin.keys(`${f.prefix}:receipt:*`)).length;
    await run();
    expect(await f.jobsEverAdded()).toBe(before);
    expect((await f.admin.keys(`${f.prefix}:receipt:*`)).length).toBe(receiptsBefore);
  }

  it("400 HEADER_MISSING when a signature header is absent", async () => {
    await expectNothingEnqueuedFor(async () => {
      const n = signedV3(f.merchant);
      const { "Wechatpay-Nonce": _dropped, ...headers } = n.headers;
      const response = await post(f.app, "/notify/v3", { headers, body: n.body });
      expect(response.statusCode).toBe(400);
      expect(response.headers["content-type"]).toBe("application/json; charset=utf-8");
      expect(response.body).toBe(fail("HEADER_MISSING: a Wechatpay-* signature header is missing"));
    });
  });

  it("401 SIGNATURE_PROBE for WeChat's WECHATPAY/SIGNTEST/ probes", async () => {
    await expectNothingEnqueuedFor(async () => {
      const response = await post(f.app, "/notify/v3", signedV3(f.merchant, { probe: true }));
      expect(response.statusCode).toBe(401);
      expect(response.body).toBe(fail("SIGNATURE_PROBE: signature probe rejected"));
    });
  });

  it("401 TIMESTAMP_SKEW when the timestamp is more than 300 s away", async () => {
    await expectNothingEnqueuedFor(async () => {
      const response = await post(f.app, "/notify/v3", signedV3(f.merchant, { now: new Date(Date.now() - 301_000) }));
      expect(response.statusCode).toBe(401);
      expect(response.body).toBe(fail("TIMESTAMP_SKEW: Wechatpay-Timestamp outside the accepted window"));
    });
  });

  it("401 SERIAL_UNKNOWN for a key id we do not have", async () => {
    await expectNothingEnqueuedFor(async () => {
      const response = await post(f.app, "/notify/v3", signedV3(f.merchant, { serial: "PUB_KEY_ID_0000000000000000" }));
      expect(response.statusCode).toBe(401);
      expect(response.body).toBe(fail("SERIAL_UNKNOWN: unknown Wechatpay-Serial"));
    });
  });

  it("401 SIGNATURE_INVALID when one body byte changed", async () => {
    await expectNothingEnqueuedFor(async () => {
      const n = signedV3(f.merchant);
      const body = Buffer.from(n.body);
      body[body.indexOf("TRANSACTION")] = "X".charCodeAt(0);
      const response = await post(f.app, "/notify/v3", { headers: n.headers, body });
      expect(response.statusCode).toBe(401);
      expect(response.body).toBe(fail("SIGNATURE_INVALID: signature verification failed"));
    });
  });

  it("401 SIGNATURE_INVALID when the body was re-serialised (whitespace added)", async () => {
    await expectNothingEnqueuedFor(async () => {
      const n = signedV3(f.merchant);
      const body = JSON.stringify(JSON.parse(n.body.toString("utf8")), null, 1);
      const response = await post(f.app, "/notify/v3", { headers: n.headers, body });
      expect(response.statusCode).toBe(401);
    });
  });

  it("413 BODY_TOO_LARGE above INGRESS_BODY_LIMIT_BYTES (64 KiB)", async () => {
    await expectNothingEnqueuedFor(async () => {
      const n = signedV3(f.merchant);
      const body = Buffer.alloc(64 * 1024 + 1, 0x20);
      const response = await post(f.app, "/notify/v3", { headers: n.headers, body });
      expect(response.statusCode).toBe(413);
      expect(response.body).toBe(fail("BODY_TOO_LARGE: request body is too large"));
    });
  });

  it("415 UNSUPPORTED_MEDIA_TYPE for a non-JSON content type or none", async () => {
    await expectNothingEnqueuedFor(async () => {
      const n = signedV3(f.merchant);
      for (const type of ["text/plain", "application/xml", "application/x-www-form-urlencoded"]) {
        const response = await post(f.app, "/notify/v3", {
          headers: { ...n.headers, "Content-Type": type },
          body: n.body,
        });
        expect(response.statusCode).toBe(415);
        expect(response.body).toBe(fail("UNSUPPORTED_MEDIA_TYPE: unsupported content type"));
      }
      const { "Content-Type": _none, ...headers } = n.headers;
      const missing = await f.app.inject({ method: "POST", url: "/notify/v3", headers });
      expect(missing.statusCode).toBe(415);
      expect(missing.body).toBe(fail("UNSUPPORTED_MEDIA_TYPE: unsupported content type"));
    });
  });

  it("400 ENVELOPE_INVALID for a correctly signed body that is not an envelope", async () => {
    await expectNothingEnqueuedFor(async () => {
      // Signed by WeChat's key but without an id: nothing to use as the job id.
      const { buildV3Message, signV3Message } = await import("@wpn/wechatpay");
      const body = Buffer.from(JSON.stringify({ event_type: "TRANSACTION.SUCCESS" }));
      const n = signedV3(f.merchant);
      const signature = signV3Message(
        buildV3Message(n.headers["Wechatpay-Timestamp"] ?? "", n.headers["Wechatpay-Nonce"] ?? "", body),
        f.merchant.platformPrivateKey,
      );
      const response = await post(f.app, "/notify/v3", {
        headers: { ...n.headers, "Wechatpay-Signature": signature },
        body,
      });
      expect(response.statusCode).toBe(400);
      expect(response.body).toBe(fail("ENVELOPE_INVALID: notification envelope is invalid"));
    });
  });

  it("404 with a FAIL body for unknown paths and methods", async () => {
    const response = await f.app.inject({ method: "GET", url: "/notify/v3" });
    expect(response.statusCode).toBe(404);
    expect(response.body).toBe(fail("NOT_FOUND: not found"));
  });

  it("counts each rejection by code in the verification-failure metric", async () => {
    const text = await f.app.ingress.metrics.registry.getSingleMetricAsString(
      "wpn_ingress_verification_failures_total",
    );
    for (const code of ["SIGNATURE_PROBE", "TIMESTAMP_SKEW", "SERIAL_UNKNOWN", "SIGNATURE_INVALID"]) {
      expect(text).toMatch(new RegExp(`api="v3",code="${code}"} [1-9]`));
    }
  });
});

/**
 * POSTs `n` to the app over real HTTP with the headers in `repeated` sent twice, as two header lines (inject cannot:
 * it hands over no raw headers). Node joins the two lines of a header it does not know into one value, "a, b".
 */
async function postRepeatingHeaders(
  app: typeof f.app,
  n: { headers: Record<string, string>; body: Buffer | string },
  repeated: Record<string, [string, string]>,
): Promise<{ statusCode: number; body: string }> {
  if (!app.server.listening) await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const headers: Record<string, string | string[]> = { ...n.headers };
  for (const [name, values] of Object.entries(repeated)) {
    for (const key of Object.keys(headers)) if (key.toLowerCase() === name.toLowerCase()) delete headers[key];
    headers[name] = values;
  }
  return new Promise((resolve, reject) => {
    const req = request(`http://127.0.0.1:${port}/notify/v3`, { method: "POST", headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ statusCode: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end(n.body);
  });
}

describe("POST /notify/v3: a signature header sent twice (two header lines)", () => {
  it("the same value twice is that value: 204 and the job, as with one line", async () => {
    const n = signedV3(f.merchant);
    const signature = n.headers["Wechatpay-Signature"] as string;
    const serial = n.headers["Wechatpay-Serial"] as string;
    const response = await postRepeatingHeaders(f.app, n, {
      "Wechatpay-Signature": [signature, signature],
      "Wechatpay-Serial": [serial, serial],
    });
    expect(response).toEqual({ statusCode: 204, body: "" });
    expect(await f.queue.getJob(n.jobId)).toBeDefined();
  });

  it("two different values are 400 HEADER_INVALID (which one was signed?), nothing queued", async () => {
    const n = signedV3(f.merchant);
    const serial = n.headers["Wechatpay-Serial"] as string;
    const response = await postRepeatingHeaders(f.app, n, { "Wechatpay-Serial": [serial, `${serial}0`] });
    expect(response).toEqual({
      statusCode: 400,
      body: fail("HEADER_INVALID: a Wechatpay-* signature header is malformed"),
    });
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();
  });

  it("two different Request-IDs (a proxy adding its own) do not refuse a genuine notification: 204, the first kept", async () => {
    const n = signedV3(f.merchant);
    const response = await postRepeatingHeaders(f.app, n, { "Request-ID": ["08F78BB5AF0610D302", "proxy-7f3a"] });
    expect(response).toEqual({ statusCode: 204, body: "" });
    const data = parseJobV3Schema.parse((await f.queue.getJob(n.jobId))?.data);
    expect(data.headers.requestId).toBe("08F78BB5AF0610D302");
  });
});

describe("POST /notify/v3: where the RSA check runs", () => {
  it.each(["sync", "async", "threads"] as const)(
    "accepts and rejects the same way with verifyMode %s (the default follows INGRESS_VERIFY_THREADS)",
    async (verifyMode) => {
      const g = await createIngressFixture({
        label: `ingress-v3-${verifyMode}`,
        merchant: f.merchant,
        app: { verifyMode },
      });
      try {
        const n = signedV3(g.merchant, { id: randomUUID() });
        expect((await post(g.app, "/notify/v3", n)).statusCode).toBe(204);
        expect(await g.queue.getJob(n.jobId)).toBeDefined();
        const body = Buffer.from(n.body);
        body[10] = body[10] === 0x41 ? 0x42 : 0x41;
        const bad = await post(g.app, "/notify/v3", { headers: n.headers, body });
        expect(bad.statusCode).toBe(401);
        // A burst: one batch of checks, with "threads" large enough to go to the worker thread; one is forged.
        const burst = Array.from({ length: 8 }, () => signedV3(g.merchant, { id: randomUUID() }));
        const answers = await Promise.all([
          ...burst.map((m) => post(g.app, "/notify/v3", m)),
          post(g.app, "/notify/v3", { headers: n.headers, body }),
        ]);
        expect(answers.map((a) => a.statusCode)).toEqual([...burst.map(() => 204), 401]);
        for (const m of burst) expect(await g.queue.getJob(m.jobId)).toBeDefined();
      } finally {
        await g.close();
      }
    },
  );
});

describe("POST /notify/v3: what a refusal logs", () => {
  it("cuts forged header values to 200 characters in the log line: a 12 KB serial does not write 24 KB", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const g = await createIngressFixture({ label: "ingress-v3-log", merchant: f.merchant, logger });
    try {
      const serial = `PUB_KEY_ID_${"9".repeat(12_000)}`;
      const requestId = "R".repeat(12_000);
      const n = signedV3(g.merchant, { serial });
      const response = await post(g.app, "/notify/v3", { ...n, headers: { ...n.headers, "Request-ID": requestId } });
      expect(response.statusCode).toBe(401);
      const line = lines.find((l) => l.code === "SERIAL_UNKNOWN");
      expect(line).toMatchObject({ serial: serial.slice(0, 200), wechatRequestId: requestId.slice(0, 200) });
      expect(JSON.stringify(line).length).toBeLessThan(1_000);
    } finally {
      await g.close();
    }
  });
});
