import { connect, createServer, type Server, type Socket } from "node:net";
import { classifyDbError, createDb } from "@wpn/db";
import { TEST_DATABASE_BASE_URL } from "@wpn/testing";
import { afterAll, beforeAll, expect, it } from "vitest";

// A network path to PostgreSQL that goes silent — no reset, no FIN: a failover, a NAT or firewall dropping the
// connection, a frozen host. A proxy stands in for it: while `silent`, it forwards nothing either way.
let silent = false;
let proxy: Server;
let port = 0;
const sockets: Socket[] = [];
beforeAll(async () => {
  const target = new URL(TEST_DATABASE_BASE_URL);
  proxy = createServer((client) => {
    const server = connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, server);
    client.on("data", (d) => {
      if (!silent) server.write(d);
    });
    server.on("data", (d) => {
      if (!silent) client.write(d);
    });
    client.on("error", () => undefined);
    server.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  port = (proxy.address() as { port: number }).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => proxy.close(resolve));
});

it("a statement on a connection gone silent fails as DB_UNAVAILABLE after the query timeout, and the pool recovers", async () => {
  const url = new URL(TEST_DATABASE_BASE_URL);
  url.host = `127.0.0.1:${port}`;
  const db = createDb({ url: url.toString(), poolMax: 1, queryTimeoutMs: 1_000 });
  try {
    const [before] = await db.prisma.$queryRaw<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    silent = true;
    const started = Date.now();
    const error = await db.prisma.$queryRaw`SELECT 2 AS two`.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeDefined();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(classifyDbError(error)).toMatchObject({ transient: true, code: "DB_UNAVAILABLE" });
    // The silent connection is dropped, not reused: once the path answers again, so does the pool.
    silent = false;
    const [after] = await db.prisma.$queryRaw<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    expect(after?.pid).toBeDefined();
    expect(after?.pid).not.toBe(before?.pid);
  } finally {
    silent = false;
    await db.close();
  }
}, 20_000);
