// The lines `npm start` prints once the apps are started: where each answers, at the address they listen on (HOST).

/** The settings the lines name. */
export interface BannerSettings {
  readonly HOST: string;
  readonly PORT: number;
  readonly DASHBOARD_PORT: number;
  readonly WORKER_HEALTH_PORT: number;
  readonly WORKER_PROCESSES: number;
}

/**
 * HOST as a URL's host for a browser or curl on this machine: a wildcard (0.0.0.0, ::) listens on every interface and
 * is reached at the loopback; an IPv6 literal goes in brackets; a name or any other address as it is (the apps listen
 * there only — 127.0.0.1 would not answer).
 */
export function urlHost(host: string): string {
  if (host === "" || host === "0.0.0.0") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "[::1]";
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** Where an app answers. PORT and DASHBOARD_PORT are never 0 (the config refuses it); WORKER_HEALTH_PORT may be. */
const at = (host: string, port: number, path: string) => `http://${host}:${port}${path}`;

export function startBanner(settings: BannerSettings): string {
  const host = urlHost(settings.HOST);
  const workers = settings.WORKER_PROCESSES;
  const health =
    settings.WORKER_HEALTH_PORT === 0
      ? "health on free ports (see each worker's log)"
      : workers === 1
        ? `health at ${at(host, settings.WORKER_HEALTH_PORT, "/health/ready")}`
        : `health at ${at(host, settings.WORKER_HEALTH_PORT, "/health/ready")} … port ${settings.WORKER_HEALTH_PORT + workers - 1} (WORKER_HEALTH_PORT + index)`;
  return [
    `Ingress:   ${at(host, settings.PORT, "/notify/v3")}`,
    `Dashboard: ${at(host, settings.DASHBOARD_PORT, "/")}`,
    `Workers:   ${workers} process(es), ${health}. Ctrl-C stops everything.`,
  ].join("\n");
}
