import { connect, createServer, type Server, type Socket } from "node:net";
import { classifyDbError, createDb, type Db, probeDatabase } from "@wpn/db";
import { createTestDatabase, TEST_DATABASE_BASE_URL, type TestDatabase } from "@wpn/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

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

it("a statement on a connection gone silent fails as DB_UNAVAILABLE after the client's timeout, and the pool recovers", async () => {
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
    // statement_timeout 1 s cannot reach a server that hears nothing: the client's own bound, 5 s later, does.
    expect(Date.now() - started).toBeLessThan(10_000);
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

describe("a statement that waits too long inside a transaction (the server answers, slowly)", () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase("dbtimeout");
    await tdb.db.pool.query(
      `CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0); CREATE TABLE w (x int)`,
    );
  });
  afterAll(async () => {
    await tdb.drop();
  });

  for (const [label, run] of [
    [
      "$transaction([...])",
      (db: Db) =>
        db.prisma.$transaction([
          db.prisma.$queryRaw`SELECT id FROM t WHERE id = 1 FOR UPDATE`,
          db.prisma.$executeRaw`UPDATE t SET v = 1 WHERE id = 1`,
        ]),
    ],
    [
      "interactive $transaction",
      (db: Db) =>
        db.prisma.$transaction(async (tx) => {
          await tx.$queryRaw`SELECT id FROM t WHERE id = 1 FOR UPDATE`;
        }),
    ],
  ] as const) {
    it(`${label}: cancelled by the server and rolled back; the connection's next write commits`, async () => {
      const app = `timeout_${label.length}`;
      const db = createDb({ url: tdb.url, poolMax: 1, queryTimeoutMs: 1_000, applicationName: app });
      const holder = await tdb.db.pool.connect();
      try {
        // Another session holds the row: the transaction's FOR UPDATE waits past the statement timeout.
        await holder.query("BEGIN");
        await holder.query("UPDATE t SET v = v WHERE id = 1");
        await expect(run(db)).rejects.toThrow();
        await holder.query("COMMIT");
        const states = await tdb.db.pool.query(`SELECT state FROM pg_stat_activity WHERE application_name = $1`, [app]);
        expect(states.rows.map((r) => r.state)).not.toContain("idle in transaction");
        await db.pool.query("INSERT INTO w VALUES (42)");
        expect((await tdb.db.pool.query("SELECT count(*)::int AS n FROM w")).rows[0].n).toBe(1);
      } finally {
        holder.release();
        await db.close();
        await tdb.db.pool.query("DELETE FROM w");
      }
    }, 30_000);
  }
});

describe("openPool (a further pool of a Db)", () => {
  it("makes its connections as the main pool's, with its own name and statement timeout", async () => {
    const tdb = await createTestDatabase("dbextrapool");
    const extra = tdb.db.openPool({ purpose: "quick", max: 1, statementTimeoutMs: 500, connectTimeoutMs: 1_000 });
    try {
      const settings = await extra.query(
        `SELECT current_schema() AS schema, current_setting('TimeZone') AS tz,
                current_setting('statement_timeout') AS timeout, current_setting('application_name') AS name`,
      );
      expect(settings.rows[0]).toEqual({
        schema: tdb.schema,
        tz: "UTC",
        timeout: "500ms",
        name: `test:${tdb.schema}:quick`,
      });
      // The server, not the client, ends a statement past it: the connection is fine for the next one.
      const started = Date.now();
      await expect(extra.query("SELECT pg_sleep(5)")).rejects.toMatchObject({ code: "57014" });
      expect(Date.now() - started).toBeLessThan(2_000);
      expect((await extra.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
      // The main pool keeps its own (30 s).
      expect((await tdb.db.pool.query("SELECT current_setting('statement_timeout') AS t")).rows[0].t).toBe("30s");
    } finally {
      await extra.end();
      await tdb.drop();
    }
  });
});

describe("probeDatabase (the worker's outage probe)", () => {
  it("answers while every pooled connection is busy: a loaded pool is not an outage", async () => {
    const db = createDb({ url: TEST_DATABASE_BASE_URL, poolMax: 1, connectTimeoutMs: 300 });
    try {
      const busy = db.pool.query("SELECT pg_sleep(2)");
      // The jobs' way in fails (a pool-wait timeout, classified DB_UNAVAILABLE)…
      await expect(db.pool.query("SELECT 1")).rejects.toThrow(/timeout/);
      // …while PostgreSQL itself answers the probe.
      await expect(probeDatabase(db.target, 1_000)).resolves.toBeUndefined();
      await busy;
    } finally {
      await db.close();
    }
  });

  it("rejects within its bound on a path gone silent, and when nothing listens", async () => {
    const url = new URL(TEST_DATABASE_BASE_URL);
    url.host = `127.0.0.1:${port}`;
    const silentDb = createDb({ url: url.toString() });
    silent = true;
    try {
      const started = Date.now();
      await expect(probeDatabase(silentDb.target, 500)).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      silent = false;
      await silentDb.close();
    }
    const nothing = createDb({ url: "postgresql://postgres@127.0.0.1:1/wechatpay_notify" });
    await expect(probeDatabase(nothing.target, 500)).rejects.toThrow();
    await nothing.close();
  });
});
