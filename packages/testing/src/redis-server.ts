import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRedisConnection } from "@wpn/queue";

/** A free TCP port on 127.0.0.1 (asked from the kernel, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/**
 * A redis-server owned by one test (no persistence), that the test may kill and restart on the same port, stop and
 * continue (SIGSTOP/SIGCONT: a replica that stops acknowledging), or start as a replica of another.
 */
export class TestRedisServer {
  #child: ChildProcess | undefined;
  readonly #dir = mkdtempSync(join(tmpdir(), "wpn-redis-"));
  private constructor(
    readonly port: number,
    /** The primary this server replicates (`--replicaof`), if any. */
    private readonly primary: TestRedisServer | undefined,
  ) {}

  static async start(options: { replicaOf?: TestRedisServer } = {}): Promise<TestRedisServer> {
    const server = new TestRedisServer(await freePort(), options.replicaOf);
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * Starts (again) on the same port and resolves once it answers PING. `config`: more settings for this run only, as
   * redis-server's command line takes them (`{ maxmemory: "100mb", "maxmemory-policy": "allkeys-lru" }`: a Redis
   * restarted with another configuration, which its clients meet only by reconnecting).
   */
  async restart(config: Record<string, string> = {}): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    for (const [name, value] of Object.entries(config)) args.push(`--${name}`, value);
    if (this.primary !== undefined) args.push("--replicaof", "127.0.0.1", String(this.primary.port));
    // Its own directory: a replication sync (the failover test) writes an RDB file there, not in the checkout.
    const child = spawn("redis-server", [...args, "--dir", this.#dir], { stdio: "ignore" });
    this.#child = child;
    const deadline = Date.now() + 10_000;
    for (;;) {
      // Nothing held the port since freePort or kill(): another redis-server may have taken it, and then answers the
      // probe while this one, unable to bind, exits. Only this child's own answer counts, and its exit is an error.
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `redis-server on ${this.port} exited (${child.exitCode ?? child.signalCode}) before answering: port taken?`,
        );
      }
      const probe = createRedisConnection(this.url, "admin", { retryStrategy: () => null, lazyConnect: true });
      probe.on("error", () => undefined);
      try {
        await probe.connect();
        if (new RegExp(`^process_id:${child.pid}\\r?$`, "m").test(await probe.info("server"))) return;
        if (Date.now() > deadline) throw new Error(`redis-server on ${this.port} answers as another process`);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`redis-server on ${this.port} did not start`, { cause: error });
      } finally {
        probe.disconnect();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Resolves once this replica's link to its primary is up (`master_link_status:up`): synced, taking its stream. */
  async replicating(timeoutMs = 10_000): Promise<void> {
    const admin = createRedisConnection(this.url, "admin");
    try {
      const deadline = Date.now() + timeoutMs;
      while (!/^master_link_status:up\r?$/m.test(await admin.info("replication"))) {
        if (Date.now() > deadline) throw new Error(`replica on ${this.port} not linked within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      admin.disconnect();
    }
  }

  /**
   * SIGSTOP / SIGCONT: a stopped server keeps its connections open and answers nothing — as a replica, it stays
   * "connected" to its primary (until the primary's repl-timeout, 60 s) but acknowledges nothing.
   */
  signal(signal: "SIGSTOP" | "SIGCONT"): void {
    if (!this.#child?.kill(signal)) throw new Error(`redis-server on ${this.port} is not running`);
  }

  /** SIGKILL: an abrupt outage, no graceful close of client connections. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }
}
