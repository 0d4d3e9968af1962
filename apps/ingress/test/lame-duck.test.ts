import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { APP_SHUTDOWN_DEADLINE_MS, INGRESS_CLOSE_MAX_MS, INGRESS_SHUTDOWN_DRAIN_MAX_MS } from "@wpn/config";
import { createTestMerchant, deletePrefix, freePort, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { afterAll, describe, expect, it } from "vitest";
import { type RunningApp, startApp, waitForHttp } from "../../../test/support/processes.ts";
import { CLOSE_STEP_MS, STALLED_CUT_MS } from "../src/app.ts";
import { signedV3 } from "./support/fixture.ts";
import { pollUntil } from "./support/wait.ts";

// SIGTERM with INGRESS_SHUTDOWN_DRAIN_MS: the process keeps serving, answers `Connection: close` and readiness 503 for
// that long, and only then closes. A request written on a kept-alive connection during the delay is answered 2xx;
// without the delay the connection was closed at the signal and such a request was cut off unanswered.

const DRAIN_MS = 1_500;
const prefix = testQueuePrefix("ingress-lame-duck");
let app: RunningApp | undefined;

afterAll(async () => {
  if (app && app.child.exitCode === null && app.child.signalCode === null) app.child.kill("SIGKILL");
  await deletePrefix(prefix);
});

/** One HTTP/1.1 request as bytes, kept alive, for a socket the test controls. */
function rawPost(n: { headers: Record<string, string>; body: Buffer | string }): Buffer {
  const body = Buffer.from(n.body);
  const headers = { ...n.headers, host: "127.0.0.1", "content-length": String(body.length), connection: "keep-alive" };
  const head = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}`)
    .join("\r\n");
  return Buffer.concat([Buffer.from(`POST /notify/v3 HTTP/1.1\r\n${head}\r\n\r\n`), body]);
}

/** Readiness's status, or 0 when the request failed (connection refused or reset). */
async function readiness(base: string): Promise<number> {
  return fetch(`${base}/health/ready`).then(
    (response) => response.status,
    () => 0,
  );
}

describe("lame-duck shutdown (real process)", () => {
  it("keeps answering for INGRESS_SHUTDOWN_DRAIN_MS after SIGTERM: readiness 503, answers say Connection: close", async () => {
    const merchant = createTestMerchant();
    const port = await freePort();
    app = startApp("ingress", {
      ...merchant.env,
      LOG_LEVEL: "info",
      HOST: "127.0.0.1",
      PORT: String(port),
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      // Notifications need only Redis (main.test.ts): no PostgreSQL, so none to wait for.
      DATABASE_URL: "postgresql://postgres@127.0.0.1:1/wechatpay_notify_test",
      INGRESS_SHUTDOWN_DRAIN_MS: String(DRAIN_MS),
    });
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/health/ready`, app);

    // A kept-alive connection, as a load balancer's: one notification answered, then idle.
    const socket: Socket = connect(port, "127.0.0.1");
    socket.on("error", () => undefined);
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
    });
    const socketClosed = once(socket, "close");
    await once(socket, "connect");
    socket.write(rawPost(signedV3(merchant)));
    expect(await pollUntil(() => received.includes("\r\n\r\n"), 5_000, 5)).toBe(true);
    expect(received).toMatch(/^HTTP\/1\.1 204 /);
    expect(received).not.toMatch(/\r\nconnection: close\r\n/i);
    received = "";

    const exited = once(app.child, "exit");
    const signalledAt = performance.now();
    app.child.kill("SIGTERM");
    // Readiness on a new connection, as health checkers ask, turns from 200 once the signal is handled: 503 (the
    // balancer is told to stop sending) — or 0, the server already closed.
    let ready = 200;
    const turned = await pollUntil(async () => {
      ready = await readiness(base);
      return ready !== 200;
    }, 1_000);
    expect(turned).toBe(true);
    // A notification the balancer writes meanwhile on the idle kept-alive connection is still taken, with an answer
    // that tells it to move off that connection.
    socket.write(rawPost(signedV3(merchant)));
    expect(await pollUntil(() => received.includes("\r\n\r\n"), 2_000, 5)).toBe(true);
    expect(performance.now() - signalledAt).toBeLessThan(DRAIN_MS);
    expect(received).toMatch(/^HTTP\/1\.1 204 /);
    expect(received).toMatch(/\r\nconnection: close\r\n/i);
    expect(ready).toBe(503);
    await socketClosed;

    const [code] = await exited;
    const tookMs = performance.now() - signalledAt;
    expect(code).toBe(0);
    expect(tookMs).toBeGreaterThanOrEqual(DRAIN_MS);
    expect(tookMs).toBeLessThan(APP_SHUTDOWN_DEADLINE_MS);
    expect(app.output()).toContain(`"drainMs":${DRAIN_MS},"msg":"shutting down`);
    expect(app.output()).toContain('"msg":"shutdown complete"');
  });

  it("the longest drain and the longest closing after it fit within the shutdown deadline", () => {
    // Closing: the stalled-connection cut, then the enqueue drain, the queue close and Redis's QUIT (app.ts, main.ts).
    expect(STALLED_CUT_MS + 3 * CLOSE_STEP_MS).toBeLessThanOrEqual(INGRESS_CLOSE_MAX_MS);
    expect(INGRESS_SHUTDOWN_DRAIN_MAX_MS + INGRESS_CLOSE_MAX_MS).toBeLessThanOrEqual(APP_SHUTDOWN_DEADLINE_MS);
    expect(INGRESS_SHUTDOWN_DRAIN_MAX_MS).toBeGreaterThanOrEqual(DRAIN_MS);
  });
});
