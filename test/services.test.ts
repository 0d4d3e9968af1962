import { mkdtempSync, rmSync } from "node:fs";
import { type AddressInfo, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_REDIS_URL } from "@wpn/testing";
import { afterAll, describe, expect, it } from "vitest";
import {
  answers,
  endpointOf,
  ensureServices,
  isLocal,
  postgresEndpointOf,
  withComposePassword,
} from "../scripts/services.ts";

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

  it("reaches an IPv6 literal, without URL's brackets, and counts ::1 as this machine", async () => {
    const server = await listening({ host: "::1", port: 0 });
    const endpoint = endpointOf(`redis://[::1]:${portOf(server)}`, 6379);
    expect(await answers(endpoint)).toBe(true);
    expect(isLocal(endpoint)).toBe(true);
    expect(endpoint).toEqual({ kind: "tcp", host: "::1", port: portOf(server) });
    expect(isLocal(endpointOf("redis://127.0.0.1:6379", 6379))).toBe(true);
    expect(isLocal(endpointOf("redis://redis.internal:6379", 6379))).toBe(false);
  });

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
      `PostgreSQL at socket ${join(dir, "none", ".s.PGSQL.5432")} does not answer; start it or fix DATABASE_URL.`,
    ]);
  });
});
