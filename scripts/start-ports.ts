// The ports `npm start`'s apps listen on, checked together before any of them starts: each app checks only its own,
// so a clash was found by the app that came second — LISTEN_FAILED after the others had started.
import { ConfigError } from "@wpn/config";
import type { BannerSettings } from "./banner.ts";

/** The settings naming the apps' ports: the ingress's, the dashboard's, and the workers' WORKER_HEALTH_PORT + index. */
export type StartPortSettings = Pick<
  BannerSettings,
  "PORT" | "DASHBOARD_PORT" | "WORKER_HEALTH_PORT" | "WORKER_PROCESSES"
>;

const MAX_PORT = 65_535;

/**
 * Throws ConfigError, naming the settings, when two of the apps would listen on one port, or a worker's
 * WORKER_HEALTH_PORT + index is past 65535. A WORKER_HEALTH_PORT of 0 (a free port per worker) clashes with nothing;
 * PORT and DASHBOARD_PORT are never 0 (the config refuses it).
 */
export function checkStartPorts(settings: StartPortSettings): void {
  const { PORT, DASHBOARD_PORT, WORKER_HEALTH_PORT: first, WORKER_PROCESSES: workers } = settings;
  if (PORT === DASHBOARD_PORT) {
    throw new ConfigError(
      "PORT",
      `PORT and DASHBOARD_PORT are both ${PORT}: the ingress and the dashboard cannot listen on one port; change one of them`,
    );
  }
  if (first === 0) return;
  const last = first + workers - 1;
  const ports = `WORKER_HEALTH_PORT + index for WORKER_PROCESSES=${workers}: ${workers === 1 ? first : `${first}–${last}`}`;
  if (last > MAX_PORT) {
    throw new ConfigError("WORKER_HEALTH_PORT", `WORKER_HEALTH_PORT runs past port ${MAX_PORT} (${ports}); lower it`);
  }
  for (const [name, port] of [
    ["PORT", PORT],
    ["DASHBOARD_PORT", DASHBOARD_PORT],
  ] as const) {
    if (port >= first && port <= last) {
      throw new ConfigError(
        name,
        `${name} ${port} is also a worker's health port (${ports}); change ${name} or WORKER_HEALTH_PORT`,
      );
    }
  }
}
