import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A PostgreSQL outage the test controls, without stopping the shared server: a TCP proxy on 127.0.0.1 that forwards
 * to the database of a `postgresql://` URL while up. `down()` drops every connection it carries (the client sees
 * "Connection terminated unexpectedly", as when PostgreSQL is stopped) and stops listening, so new connections are
 * refused (ECONNREFUSED); `up()` listens again on the same port.
 */
export interface DbProxy {
  /** `url` with its host and port replaced by the proxy's (query string, schema included, kept). */
  via(url: string): string;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startDbProxy(targetUrl: string): Promise<DbProxy> {
  const target = new URL(targetUrl);
  const targetPort = Number(target.port || 5432);
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  };
  let server: Server | null = null;
  let port = 0;

  const listen = async () => {
    const next = createServer((client) => {
      const upstream = connect(targetPort, target.hostname);
      track(client);
      track(upstream);
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      next.once("error", reject);
      next.listen(port, "127.0.0.1", () => {
        next.off("error", reject);
        resolve();
      });
    });
    port = (next.address() as { port: number }).port;
    server = next;
  };
  const stop = async () => {
    const current = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    if (current) await new Promise<void>((resolve) => current.close(() => resolve()));
  };

  await listen();
  return {
    via(url: string) {
      const proxied = new URL(url);
      proxied.host = `127.0.0.1:${port}`;
      return proxied.toString();
    },
    down: stop,
    async up() {
      if (server === null) await listen();
    },
    close: stop,
  };
}
