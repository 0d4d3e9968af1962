import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { type AddressInfo, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRedisConnection } from "@wpn/queue";
import { freePort, TEST_DATABASE_BASE_URL, TEST_REDIS_URL } from "@wpn/testing";
import { afterAll, describe, expect, it } from "vitest";
import {
  answers,
  clusterProblem,
  endpointOf,
  ensureServices,
  isLocal,
  parseClusters,
  postgresEndpointOf,
  startLocalRedis,
  withComposePassword,
} from "../scripts/services.ts";

/**
 * A free port on the IPv6 loopback, or undefined on a host without one (IPv6 disabled): the tests of ::1 are skipped
 * there rather than failing on the host.
 */
const ipv6LoopbackPort = await new Promise<number | undefined>((done) => {
  const probe = createServer();
  probe.once("error", () => done(undefined));
  probe.listen(0, "::1", () => {
    const { port } = probe.address() as AddressInfo;
    probe.close(() => done(port));
  });
});

describe("npm start with Docker Compose's PostgreSQL", () => {
  it("adds compose's password to a URL without one (the image refuses password-less TCP connections)", () => {
    expect(withComposePassword("postgresql://postgres@127.0.0.1:5432/wechatpay_notify")).toBe(
      "postgresql://postgres:postgres@127.0.0.1:5432/wechatpay_notify",
    );
    expect(withComposePassword("postgresql://127.0.0.1:5432/wechatpay_notify?schema=shop")).toBe(
      "postgresql://postgres:postgres@127.0.0.1:5432/wechatpay_notify?schema=shop",
    );
  });

  it("leaves a URL with a password, or for another user, as it is", () => {
    for (const url of ["postgresql://postgres:secret@127.0.0.1:5432/db", "postgresql://shop@127.0.0.1:5432/db"]) {
      expect(withComposePassword(url)).toBe(url);
    }
  });
});

describe("npm start's probes of PostgreSQL and Redis", () => {
  const dir = mkdtempSync(join(tmpdir(), "wpn-services-"));
  const servers: Server[] = [];
  afterAll(async () => {
    for (const server of servers) await new Promise((done) => server.close(done));
    rmSync(dir, { recursive: true, force: true });
  });
  const listening = (options: { host: string; port: number } | { path: string }) =>
    new Promise<Server>((done, fail) => {
      const server = createServer((socket) => socket.end());
      server.once("error", fail);
      server.listen(options, () => {
        servers.push(server);
        done(server);
      });
    });
  const portOf = (server: Server) => (server.address() as AddressInfo).port;

  it.skipIf(ipv6LoopbackPort === undefined)(
    "reaches an IPv6 literal, without URL's brackets, and counts ::1 as this machine",
    async () => {
      const server = await listening({ host: "::1", port: 0 });
      const endpoint = endpointOf(`redis://[::1]:${portOf(server)}`, 6379);
      expect(await answers(endpoint)).toBe(true);
      expect(isLocal(endpoint)).toBe(true);
      expect(endpoint).toEqual({ kind: "tcp", host: "::1", port: portOf(server) });
      expect(isLocal(endpointOf("redis://127.0.0.1:6379", 6379))).toBe(true);
      expect(isLocal(endpointOf("redis://redis.internal:6379", 6379))).toBe(false);
    },
  );

  it("probes a socket URL's socket file, not TCP 127.0.0.1:5432", async () => {
    const server = await listening({ path: join(dir, ".s.PGSQL.5433") });
    const endpoint = postgresEndpointOf(`postgresql:///db?host=${dir}&port=5433`);
    expect(endpoint).toEqual({ kind: "socket", path: join(dir, ".s.PGSQL.5433") });
    expect(await answers(endpoint)).toBe(true);
    server.close();
    // Nothing listens on the default port's socket in `dir`, whatever answers on 127.0.0.1:5432.
    expect(await answers(postgresEndpointOf(`postgresql:///db?host=${dir}`))).toBe(false);
    expect(postgresEndpointOf(`postgresql://postgres@${encodeURIComponent(dir)}:5434/db`)).toEqual({
      kind: "socket",
      path: join(dir, ".s.PGSQL.5434"),
    });
    // `?host=` wins over the URL's host, as in pg; a host name there is TCP.
    expect(postgresEndpointOf("postgresql://ignored/db?host=db.internal&port=6432")).toEqual({
      kind: "tcp",
      host: "db.internal",
      port: 6432,
    });
    expect(postgresEndpointOf("postgresql://postgres@[::1]/db")).toEqual({ kind: "tcp", host: "::1", port: 5432 });
  });

  it("never starts a server, nor rewrites DATABASE_URL, for a socket URL that does not answer", async () => {
    const url = `postgresql:///db?host=${encodeURIComponent(join(dir, "none"))}`;
    const outcome = await ensureServices(url, TEST_REDIS_URL, dir);
    expect(outcome.databaseUrl).toBe(url);
    expect(outcome.problems).toEqual([
      `PostgreSQL at socket ${join(dir, "none", ".s.PGSQL.5432")} does not answer (ENOENT); start it or fix DATABASE_URL.`,
    ]);
  });

  it("a host name that does not resolve is said to be one, naming the setting (not 'does not answer')", async () => {
    const outcome = await ensureServices("postgresql://postgres@wpn-no-such-host.invalid:5432/db", TEST_REDIS_URL, dir);
    expect(outcome.problems).toEqual([
      "PostgreSQL at wpn-no-such-host.invalid:5432 cannot be reached: the host name wpn-no-such-host.invalid does not resolve (ENOTFOUND); fix the host in DATABASE_URL.",
    ]);
    const redis = await ensureServices(TEST_DATABASE_BASE_URL, "redis://wpn-no-such-host.invalid:6379", dir);
    expect(redis.problems).toEqual([
      "Redis at wpn-no-such-host.invalid:6379 cannot be reached: the host name wpn-no-such-host.invalid does not resolve (ENOTFOUND); fix the host in REDIS_URL.",
    ]);
  });
});

describe("npm start and a PostgreSQL of Debian/Ubuntu's packages (pg_lsclusters)", () => {
  const listed = [
    "15  main    5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log",
    "16  reports 5434 down   postgres /var/lib/postgresql/16/reports /var/log/postgresql/postgresql-16-reports.log",
    "",
  ].join("\n");
  const clusters = parseClusters(listed);

  it("reads the clusters, their ports and whether they run", () => {
    expect(clusters).toEqual([
      { version: "15", name: "main", port: 5432, online: true },
      { version: "16", name: "reports", port: 5434, online: false },
    ]);
    expect(parseClusters("15 main 5432 online,recovery postgres /d /l\n")[0]?.online).toBe(true);
  });

  it("DATABASE_URL names another port than the running cluster's: says so, naming the cluster's port", () => {
    // Before: "Install it (…apt-get install postgresql…)", to someone whose PostgreSQL ran on 5432.
    const problem = clusterProblem({ kind: "tcp", host: "127.0.0.1", port: 5433 }, clusters);
    expect(problem).toBe(
      "PostgreSQL runs on this machine but listens on another port than DATABASE_URL names (127.0.0.1:5433): " +
        "cluster 15/main on port 5432 (online), cluster 16/reports on port 5434 (down). Put the cluster's port into " +
        "DATABASE_URL, or set port = 5433 in the cluster's postgresql.conf (/etc/postgresql/<version>/<cluster>/), " +
        "then run npm start again.",
    );
  });

  it("the cluster runs on DATABASE_URL's port but not at its address: its listen_addresses", () => {
    const problem = clusterProblem({ kind: "tcp", host: "::1", port: 5432 }, clusters);
    expect(problem).toBe(
      "PostgreSQL's cluster 15/main runs on port 5432 but does not answer at [::1]:5432: add that address to " +
        "listen_addresses in /etc/postgresql/15/main/postgresql.conf (then: sudo pg_ctlcluster 15 main restart), or " +
        "put an address it listens on into DATABASE_URL, then run npm start again.",
    );
  });

  it("the cluster of DATABASE_URL's port is down after starting it: its log", () => {
    const problem = clusterProblem({ kind: "tcp", host: "127.0.0.1", port: 5434 }, clusters);
    expect(problem).toBe(
      "PostgreSQL's cluster 16/reports (port 5434) did not start: its log (pg_lsclusters names it; usually in " +
        "/var/log/postgresql/) says why. Then run npm start again.",
    );
  });

  it("no cluster at all: nothing to say (the message to install PostgreSQL stands)", () => {
    expect(clusterProblem({ kind: "tcp", host: "127.0.0.1", port: 5432 }, [])).toBeUndefined();
  });
});

/** Whether the endpoint answers within 20 s (a daemon just started). */
async function answersWithin(endpoint: Parameters<typeof answers>[0]): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    if (await answers(endpoint, 250)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

/** SHUTDOWN NOSAVE of the redis-server at each URL that answers (a test's own daemon). */
async function shutDown(urls: string[]): Promise<void> {
  for (const url of urls) {
    const admin = createRedisConnection(url, "admin", { retryStrategy: () => null, lazyConnect: true });
    admin.on("error", () => undefined);
    await admin
      .connect()
      .then(() => admin.call("SHUTDOWN", "NOSAVE"))
      .catch(() => undefined);
    admin.disconnect();
  }
}

describe("npm start's own Redis", () => {
  const dir = mkdtempSync(join(tmpdir(), "wpn-redis-start-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes its pid file into its own folder (a daemonized redis-server given none writes one under /var/run)", async () => {
    const port = await freePort();
    const endpoint = endpointOf(`redis://127.0.0.1:${port}`, 6379);
    expect(startLocalRedis(endpoint, dir)).toBe(true);
    try {
      expect(await answersWithin(endpoint)).toBe(true);
      // redis-server accepts connections (its listening socket) a moment before it writes the pid file: under load
      // (two test files at a time on 2 cores) a read right after the first connect found none yet.
      const pidFile = join(dir, ".dev/redis/redis.pid");
      for (let i = 0; i < 40 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 250));
      const pid = Number(readFileSync(pidFile, "utf8").trim());
      expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("redis-server");
    } finally {
      await shutDown([`redis://127.0.0.1:${port}`]);
    }
  });

  it.skipIf(ipv6LoopbackPort === undefined)(
    "listens at REDIS_URL's host: [::1] is reached (it was bound to 127.0.0.1 alone)",
    async () => {
      const port = ipv6LoopbackPort as number;
      const endpoint = endpointOf(`redis://[::1]:${port}`, 6379);
      expect(startLocalRedis(endpoint, dir)).toBe(true);
      try {
        expect(await answersWithin(endpoint)).toBe(true);
      } finally {
        // The daemon it started: shut down whether or not it could be reached at [::1] (the old one listened on 127.0.0.1).
        await shutDown([`redis://[::1]:${port}`, `redis://127.0.0.1:${port}`]);
      }
    },
  );
});
