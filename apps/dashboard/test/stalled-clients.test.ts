import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDashboard, type TestDashboard } from "./support/app.ts";

let d: TestDashboard;
beforeAll(async () => {
  d = await startDashboard("dash_stalled");
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
      expect(answers.get(sockets.silent)).toMatch(/^HTTP\/1\.1 408 /);
      expect(sent).toBeLessThan(request.length - 1);
      expect(headerSent).toBeLessThan(head - 1);
    } finally {
      clearInterval(drip);
      for (const socket of all) socket.destroy();
    }
  }, 30_000);
});
