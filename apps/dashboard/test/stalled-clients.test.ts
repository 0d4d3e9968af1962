import { once } from "node:events";
import { connect, type Socket } from "node:net";
import type { FastifyBaseLogger } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDashboard, type TestDashboard } from "./support/app.ts";

let d: TestDashboard;
const logLines: { level: number; code?: string; status?: number }[] = [];
beforeAll(async () => {
  const logger = pino({ level: "info" }, { write: (line: string) => logLines.push(JSON.parse(line)) });
  d = await startDashboard("dash_stalled", { logger: logger as FastifyBaseLogger });
  await d.app.listen({ host: "127.0.0.1", port: 0 });
});
afterAll(async () => {
  await d?.close();
});

function connectToDashboard(): Socket {
  const address = d.app.server.address();
  if (address === null || typeof address === "string") throw new Error("not listening");
  return connect(address.port, "127.0.0.1");
}

/** When `socket` closed, ms after `started`; undefined when it is still open after `limitMs`. */
function closedWithin(socket: Socket, started: number, limitMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), limitMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

describe("stalled clients", () => {
  it("a connection that sends nothing, a login whose body stops coming, trickles in, or whose headers do, is cut after 10 s", async () => {
    const body = "username=olga&password=guess&_csrf=x";
    const request = Buffer.from(
      `POST /login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    );
    const head = request.indexOf("\r\n\r\n") + 4;
    const sockets = {
      // Connected, and not a byte sent.
      mute: connectToDashboard(),
      silent: connectToDashboard(),
      trickling: connectToDashboard(),
      slowHeaders: connectToDashboard(),
    };
    const all = Object.values(sockets);
    // A drip written just as the server closes its socket fails with EPIPE/ECONNRESET: expected. Each answer is read
    // (a socket whose data nobody reads never emits `close`).
    const answers = new Map<Socket, string>();
    for (const socket of all) {
      socket.on("error", () => undefined);
      socket.on("data", (chunk: Buffer) => answers.set(socket, (answers.get(socket) ?? "") + chunk.toString("latin1")));
    }
    await Promise.all(all.map((socket) => once(socket, "connect")));
    // All but the last byte, then nothing.
    sockets.silent.write(request.subarray(0, request.length - 1));
    // The head, then a byte of the body, or of the head, every 500 ms: never silent for long.
    sockets.trickling.write(request.subarray(0, head));
    let sent = head;
    let headerSent = 0;
    const drip = setInterval(() => {
      if (sent < request.length - 1) sockets.trickling.write(request.subarray(sent, ++sent));
      if (headerSent < head - 1) sockets.slowHeaders.write(request.subarray(headerSent, ++headerSent));
    }, 500);
    const started = Date.now();
    try {
      const took = await Promise.all(all.map((socket) => closedWithin(socket, started, 16_000)));
      expect(took.map((ms) => ms !== undefined && ms >= 9_000 && ms < 14_000)).toEqual([true, true, true, true]);
      const answer = answers.get(sockets.silent) ?? "";
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      // Refused like any other request of the dashboard: its code, its headers, logged and counted.
      const [head408 = "", body408] = answer.split("\r\n\r\n");
      const headers = head408.toLowerCase();
      expect(headers).toContain("content-security-policy: default-src 'self'");
      expect(headers).toContain("x-content-type-options: nosniff");
      expect(headers).toContain("x-frame-options: deny");
      expect(headers).toContain("cache-control: no-store");
      expect(headers).toContain("connection: close");
      expect(JSON.parse(body408 ?? "")).toMatchObject({ error: "REQUEST_TIMEOUT" });
      const logged = logLines.filter((line) => line.code === "REQUEST_TIMEOUT");
      expect(logged.length).toBeGreaterThanOrEqual(1);
      expect(logged[0]).toMatchObject({ level: 40, status: 408 });
      const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
      expect(metrics.body).toContain(
        `dashboard_http_requests_total{method="(unknown)",route="(http)",status="408"} ${logged.length}`,
      );
      expect(sent).toBeLessThan(request.length - 1);
      expect(headerSent).toBeLessThan(head - 1);
    } finally {
      clearInterval(drip);
      for (const socket of all) socket.destroy();
    }
  }, 30_000);

  it("answers headers too large and malformed HTTP like the timeout: its code, the headers, logged and counted", async () => {
    const cases = [
      {
        request: `GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`,
        status: 431,
        code: "HEADERS_TOO_LARGE",
      },
      { request: "NOT HTTP AT ALL\r\n\r\n", status: 400, code: "HTTP_INVALID" },
    ];
    for (const { request, status, code } of cases) {
      const socket = connectToDashboard();
      socket.on("error", () => undefined);
      let answer = "";
      socket.on("data", (chunk: Buffer) => {
        answer += chunk.toString("latin1");
      });
      await once(socket, "connect");
      socket.write(request);
      await closedWithin(socket, Date.now(), 5_000);
      expect(answer, code).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(answer.toLowerCase(), code).toContain("x-frame-options: deny");
      expect(JSON.parse(answer.split("\r\n\r\n")[1] ?? ""), code).toMatchObject({ error: code });
      expect(logLines.filter((line) => line.code === code).length, code).toBe(1);
      const metrics = await d.app.inject({ method: "GET", url: "/metrics" });
      expect(metrics.body, code).toContain(
        `dashboard_http_requests_total{method="(unknown)",route="(http)",status="${status}"} 1`,
      );
    }
  });
});
