import { spawn } from "node:child_process";
import { once } from "node:events";
import { createRedisConnection } from "@wpn/queue";
import { expect, it } from "vitest";
import { TestRedisServer } from "../src/redis-server.ts";

// A TestRedisServer's port is free when asked for (freePort) and while the server is down between kill() and
// restart(), but nothing holds it: another file's redis-server may take it meanwhile. Its own redis-server then
// cannot bind and exits, and the other answers the PING: two files would share one server, each changing the
// other's configuration (maxmemory, CLIENT PAUSE, REPLICAOF) or killing it.
it("restart() on a port another redis-server took meanwhile rejects, instead of resolving on the other's PING", async () => {
  const server = await TestRedisServer.start();
  await server.kill();
  const squatter = spawn("redis-server", ["--port", String(server.port), "--bind", "127.0.0.1", "--save", ""], {
    stdio: "ignore",
  });
  try {
    const probe = createRedisConnection(server.url, "admin", { retryStrategy: () => 50, maxRetriesPerRequest: null });
    // Refused until the squatter listens; ioredis retries, and the PING below waits for it.
    probe.on("error", () => undefined);
    try {
      expect(await probe.ping()).toBe("PONG");
    } finally {
      probe.disconnect();
    }
    await expect(server.restart()).rejects.toThrow(`redis-server on ${server.port} exited`);
  } finally {
    const exited = once(squatter, "exit");
    squatter.kill("SIGKILL");
    await exited;
    await server.kill();
  }
});
