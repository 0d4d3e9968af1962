import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

export interface ReadinessReport {
  ready: boolean;
  checks: Record<string, "ok" | string>;
}

export interface HealthServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The process's small HTTP server:
 * - `GET /health/live`: 200 while the event loop runs and `liveness` names no failure, else 503 with that failure
 *   (restart the process when it stops answering or answers 503);
 * - `GET /health/ready`: 200 when this process takes jobs and reaches Redis and PostgreSQL, else 503 with
 *   the failing checks (during shutdown it is 503 at once);
 * - `GET /metrics`: Prometheus text format of this process's registry.
 */
export async function startHealthServer(opts: {
  host: string;
  port: number;
  registry: Registry;
  readiness: () => Promise<ReadinessReport>;
  /** Why the process can no longer do its work and must be restarted, or null while it can. */
  liveness?: () => string | null;
}): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: string, type = "application/json") => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method !== "GET" && req.method !== "HEAD")
      return send(405, JSON.stringify({ error: "method not allowed" }));
    if (path === "/health/live") {
      const failure = opts.liveness?.() ?? null;
      return failure === null
        ? send(200, JSON.stringify({ status: "ok" }))
        : send(503, JSON.stringify({ status: "failed", error: failure }));
    }
    if (path === "/health/ready") {
      opts.readiness().then(
        (report) =>
          send(
            report.ready ? 200 : 503,
            JSON.stringify({ status: report.ready ? "ok" : "unavailable", checks: report.checks }),
          ),
        (error: unknown) => send(503, JSON.stringify({ status: "unavailable", error: String(error) })),
      );
      return;
    }
    if (path === "/metrics") {
      opts.registry.metrics().then(
        (text) => send(200, text, opts.registry.contentType),
        (error: unknown) => send(500, JSON.stringify({ error: String(error) })),
      );
      return;
    }
    send(404, JSON.stringify({ error: "not found" }));
  });
  // A slow or idle client must not keep the process alive past shutdown.
  server.keepAliveTimeout = 2_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

/** Resolves `promise`, or rejects with `message` after `ms`. The timer does not keep the process alive. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
