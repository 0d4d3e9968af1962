// Local services for `npm start`: checks that PostgreSQL and Redis answer and, when one does not, starts it —
// with Docker Compose when a Docker engine runs, otherwise with a locally installed server — or says exactly
// what to install. Used only by scripts/start.ts (the apps themselves never start infrastructure).
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { connect } from "node:net";
import { join, resolve } from "node:path";

/** A TCP host and port. */
export interface TcpEndpoint {
  kind: "tcp";
  host: string;
  port: number;
}

/** Where a service answers: TCP, or a Unix-domain socket (PostgreSQL's `?host=/var/run/postgresql`). */
export type Endpoint = TcpEndpoint | { kind: "socket"; path: string };

/** URL keeps an IPv6 literal's brackets (`[::1]`), which connect() does not take. */
const withoutBrackets = (hostname: string) => hostname.replace(/^\[(.*)\]$/, "$1");

/** A TCP URL's endpoint (REDIS_URL's). No host: 127.0.0.1. */
export function endpointOf(url: string, defaultPort: number): TcpEndpoint {
  const parsed = new URL(url);
  return {
    kind: "tcp",
    host: withoutBrackets(parsed.hostname) || "127.0.0.1",
    port: Number(parsed.port || defaultPort),
  };
}

/**
 * DATABASE_URL's endpoint, read as pg reads it: `?host=` and `?port=` win over the URL's own; a host that is a
 * directory (`?host=/var/run/postgresql`, or percent-encoded as the URL's host) means the socket
 * `<dir>/.s.PGSQL.<port>`. No host: 127.0.0.1.
 */
export function postgresEndpointOf(url: string): Endpoint {
  const parsed = new URL(url);
  const host = parsed.searchParams.get("host") || decodeURIComponent(withoutBrackets(parsed.hostname));
  const port = Number(parsed.searchParams.get("port") || parsed.port || 5432);
  if (host.startsWith("/")) return { kind: "socket", path: join(host, `.s.PGSQL.${port}`) };
  return { kind: "tcp", host: host || "127.0.0.1", port };
}

/** The endpoint as messages name it (an IPv6 literal in brackets again, as in a URL). */
function describeEndpoint(endpoint: Endpoint): string {
  if (endpoint.kind === "socket") return `socket ${endpoint.path}`;
  return `${endpoint.host.includes(":") ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
}

/**
 * Why nothing accepts connections at the endpoint within `timeoutMs` — Node's error code (ENOTFOUND: the host name
 * does not resolve; ECONNREFUSED; ENOENT: no socket file; …) or `no answer within N s` — or undefined when something does.
 */
export function unanswered(endpoint: Endpoint, timeoutMs = 1_000): Promise<string | undefined> {
  return new Promise((done) => {
    const socket =
      endpoint.kind === "socket"
        ? connect({ path: endpoint.path })
        : connect({ host: endpoint.host, port: endpoint.port });
    const finish = (cause: string | undefined) => {
      socket.destroy();
      done(cause);
    };
    socket.setTimeout(timeoutMs, () => finish(`no answer within ${timeoutMs / 1_000} s`));
    socket.once("connect", () => finish(undefined));
    socket.once("error", (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
  });
}

/** True when something accepts connections at the endpoint within `timeoutMs`. */
export async function answers(endpoint: Endpoint, timeoutMs = 1_000): Promise<boolean> {
  return (await unanswered(endpoint, timeoutMs)) === undefined;
}

/** What to tell about an endpoint elsewhere (or a socket) that does not answer, naming the setting to fix. */
function remoteProblem(service: string, endpoint: Endpoint, cause: string, setting: string): string {
  const where = describeEndpoint(endpoint);
  if (endpoint.kind === "tcp" && (cause === "ENOTFOUND" || cause === "EAI_AGAIN")) {
    const why = cause === "ENOTFOUND" ? "does not resolve" : "could not be resolved now (DNS did not answer)";
    return `${service} at ${where} cannot be reached: the host name ${endpoint.host} ${why} (${cause}); fix the host in ${setting}.`;
  }
  return `${service} at ${where} does not answer (${cause}); start it or fix ${setting}.`;
}

async function waitFor(endpoint: Endpoint, seconds: number): Promise<boolean> {
  for (let i = 0; i < seconds * 4; i++) {
    if (await answers(endpoint, 250)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

const has = (command: string) => spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
const dockerEngineRuns = () => has("docker") && spawnSync("docker", ["info"], { stdio: "ignore" }).status === 0;
/**
 * A TCP endpoint on this machine: one `npm start` may start a server for. Never a socket: the server behind a socket
 * directory is the system's own (or another tool's), and starting Compose's instead would rewrite DATABASE_URL.
 */
export function isLocal(endpoint: Endpoint): endpoint is TcpEndpoint {
  return endpoint.kind === "tcp" && ["127.0.0.1", "localhost", "::1"].includes(endpoint.host);
}

/**
 * `--wait` returns once the service's healthcheck passes: a port published by Docker accepts connections before
 * PostgreSQL has finished initialising its volume, so an open port alone says nothing.
 */
function startWithCompose(service: "postgres" | "redis"): boolean {
  return spawnSync("docker", ["compose", "up", "-d", "--wait", service], { stdio: "inherit" }).status === 0;
}

/** The password docker-compose.yml gives its PostgreSQL (POSTGRES_PASSWORD); the image asks for it over TCP. */
const COMPOSE_POSTGRES_PASSWORD = "postgres";

/**
 * DATABASE_URL for compose's PostgreSQL: the image lets connections from outside the container in only with a
 * password (scram-sha-256), and Docker's port mapping makes every connection come from outside. A URL that
 * already has a password, or names another user, is left as it is.
 */
export function withComposePassword(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== "" || (parsed.username !== "" && parsed.username !== "postgres")) return url;
  parsed.username = "postgres";
  parsed.password = COMPOSE_POSTGRES_PASSWORD;
  return parsed.toString();
}

/**
 * Starts redis-server (daemonized, data in `<repoRoot>/.dev/redis`) at REDIS_URL's address: `[::1]`, which the README
 * lists as this machine, was never reached when it listened on 127.0.0.1 alone. `localhost` binds 127.0.0.1: Node tries
 * each address the name has.
 */
export function startLocalRedis({ host, port }: TcpEndpoint, repoRoot: string): boolean {
  if (!has("redis-server")) return false;
  const dir = resolve(repoRoot, ".dev/redis");
  mkdirSync(dir, { recursive: true });
  const bind = host === "localhost" ? "127.0.0.1" : host;
  // AOF on and no eviction: BullMQ must never lose keys (see docker-compose.yml for the same settings). A daemonized
  // redis-server given no pid file writes /var/run/redis.pid (Redis's built-in default), a system-wide path a packaged
  // Redis or another project's may use: ours goes next to its data, where `kill $(cat .dev/redis/redis.pid)` finds it.
  const args = ["--daemonize", "yes", "--bind", bind, "--port", String(port), "--dir", dir];
  args.push("--pidfile", resolve(dir, "redis.pid"));
  args.push("--appendonly", "yes", "--maxmemory-policy", "noeviction", "--logfile", resolve(dir, "redis.log"));
  return spawnSync("redis-server", args, { stdio: "inherit" }).status === 0;
}

/** A PostgreSQL cluster of Debian/Ubuntu's packaging (postgresql-common), as `pg_lsclusters` lists it. */
export interface Cluster {
  version: string;
  name: string;
  port: number;
  online: boolean;
}

/** `pg_lsclusters --no-header`'s lines: `15 main 5432 online postgres /var/lib/… /var/log/…` (status may be `online,recovery`). */
export function parseClusters(listing: string): Cluster[] {
  return listing
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([version, name, port]) => version !== undefined && name !== undefined && /^\d+$/.test(port ?? ""))
    .map(([version = "", name = "", port, status = ""]) => ({
      version,
      name,
      port: Number(port),
      online: status.startsWith("online"),
    }));
}

/** The clusters `pg_lsclusters` lists; none where Debian/Ubuntu's packaging is not installed. */
function listClusters(): Cluster[] {
  if (!has("pg_lsclusters")) return [];
  const listed = spawnSync("pg_lsclusters", ["--no-header"], { encoding: "utf8" });
  return listed.status === 0 ? parseClusters(listed.stdout) : [];
}

const clusterName = (cluster: Cluster) => `${cluster.version}/${cluster.name}`;

/**
 * Starts the cluster configured for DATABASE_URL's port when it is down. A cluster that runs is not started again
 * (pg_ctlcluster refuses: "Cluster is already running"), nor one on another port: DATABASE_URL would not reach it.
 */
function startLocalPostgres(endpoint: TcpEndpoint): boolean {
  const cluster = listClusters().find((c) => c.port === endpoint.port);
  if (cluster === undefined || cluster.online) return false;
  console.log(`PostgreSQL does not answer at ${describeEndpoint(endpoint)}; starting cluster ${clusterName(cluster)}…`);
  const args = ["--skip-systemctl-redirect", cluster.version, cluster.name, "start"];
  return spawnSync("pg_ctlcluster", args, { stdio: "inherit" }).status === 0;
}

/**
 * Why PostgreSQL installed from Debian/Ubuntu's packages does not answer at DATABASE_URL's `endpoint`, given its
 * `clusters`; undefined without any (then it is not installed that way). Before, each case was told to install
 * PostgreSQL — also someone whose PostgreSQL ran, on another port than DATABASE_URL named.
 */
export function clusterProblem(endpoint: TcpEndpoint, clusters: readonly Cluster[]): string | undefined {
  const where = describeEndpoint(endpoint);
  const cluster = clusters.find((c) => c.port === endpoint.port);
  if (cluster === undefined) {
    if (clusters.length === 0) return undefined;
    const listed = clusters.map((c) => `cluster ${clusterName(c)} on port ${c.port} (${c.online ? "online" : "down"})`);
    return [
      `PostgreSQL ${clusters.some((c) => c.online) ? "runs" : "is installed"} on this machine but listens on another`,
      `port than DATABASE_URL names (${where}): ${listed.join(", ")}. Put the cluster's port into DATABASE_URL, or set`,
      `port = ${endpoint.port} in the cluster's postgresql.conf (/etc/postgresql/<version>/<cluster>/), then run npm start again.`,
    ].join(" ");
  }
  const conf = `/etc/postgresql/${cluster.version}/${cluster.name}/postgresql.conf`;
  if (cluster.online) {
    return [
      `PostgreSQL's cluster ${clusterName(cluster)} runs on port ${cluster.port} but does not answer at ${where}: add that`,
      `address to listen_addresses in ${conf} (then: sudo pg_ctlcluster ${cluster.version} ${cluster.name} restart), or`,
      "put an address it listens on into DATABASE_URL, then run npm start again.",
    ].join(" ");
  }
  return `PostgreSQL's cluster ${clusterName(cluster)} (port ${cluster.port}) did not start: its log (pg_lsclusters names it; usually in /var/log/postgresql/) says why. Then run npm start again.`;
}

export interface ServicesOutcome {
  /** Sentences telling the user what to install or run; empty when both services answer. */
  problems: string[];
  /** The DATABASE_URL to use: `databaseUrl`, with compose's password when compose's PostgreSQL was started. */
  databaseUrl: string;
}

/** Makes sure PostgreSQL and Redis answer, starting what it can. */
export async function ensureServices(
  databaseUrl: string,
  redisUrl: string,
  repoRoot: string,
): Promise<ServicesOutcome> {
  const postgres = postgresEndpointOf(databaseUrl);
  const redis = endpointOf(redisUrl, 6379);
  const problems: string[] = [];
  const docker = dockerEngineRuns();
  let url = databaseUrl;

  const postgresCause = await unanswered(postgres);
  if (postgresCause !== undefined) {
    const where = describeEndpoint(postgres);
    if (!isLocal(postgres)) problems.push(remoteProblem("PostgreSQL", postgres, postgresCause, "DATABASE_URL"));
    else {
      if (docker) console.log(`PostgreSQL does not answer at ${where}; starting it with Docker Compose…`);
      const started = docker ? startWithCompose("postgres") : startLocalPostgres(postgres);
      if (started && docker) url = withComposePassword(databaseUrl);
      if (!started || !(await waitFor(postgres, 30))) {
        problems.push(
          (docker ? undefined : clusterProblem(postgres, listClusters())) ??
            `PostgreSQL does not answer at ${where}. Install it (Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql@16) or run 'docker compose up -d postgres', then run npm start again.`,
        );
      }
    }
  }
  const redisCause = await unanswered(redis);
  if (redisCause !== undefined) {
    const where = describeEndpoint(redis);
    if (!isLocal(redis)) problems.push(remoteProblem("Redis", redis, redisCause, "REDIS_URL"));
    else {
      console.log(`Redis does not answer at ${where}; starting it ${docker ? "with Docker Compose" : "locally"}…`);
      const started = docker ? startWithCompose("redis") : startLocalRedis(redis, repoRoot);
      if (!started || !(await waitFor(redis, 15))) {
        problems.push(
          `Redis does not answer at ${where}. Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or run 'docker compose up -d redis', then run npm start again.`,
        );
      }
    }
  }
  return { problems, databaseUrl: url };
}
