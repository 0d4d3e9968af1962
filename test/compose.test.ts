import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { envSchema } from "@wpn/config";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { forceKillAfterMs } from "../scripts/stopping.ts";

// Docker cannot run on the CI machine, so the compose file is checked statically: every service's command
// must point at a file in this repository, Redis must be configured so BullMQ never loses keys, and the
// worker must be scalable (`docker compose up --scale worker=4`).
const root = resolve(import.meta.dirname, "..");
interface Service {
  build?: string;
  image?: string;
  command?: string[];
  ports?: string[];
  container_name?: string;
  environment?: Record<string, string>;
  stop_grace_period?: string;
}
type Compose = { services: Record<string, Service> };
const text = readFileSync(resolve(root, "docker-compose.yml"), "utf8");

/**
 * Compose's variable interpolation for the forms the file uses: `${NAME}` and `${NAME:-default}` (unset or empty:
 * the default). `variables` stands for the shell over the project folder's .env, which is what Compose reads.
 */
function interpolate(source: string, variables: Record<string, string>): string {
  return source.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, fallback?: string) => {
    const value = variables[name];
    return value === undefined || value === "" ? (fallback ?? "") : value;
  });
}
const load = (variables: Record<string, string> = {}) =>
  parse(interpolate(text, variables), { merge: true }) as Compose;
const compose = load();

describe("docker-compose.yml", () => {
  it("defines the infrastructure and every app", () => {
    expect(Object.keys(compose.services).sort()).toEqual(
      ["dashboard", "ingress", "migrate", "postgres", "redis", "worker"].sort(),
    );
  });

  it("runs, for every app service, a script that exists in the repository, from the one Dockerfile", () => {
    for (const name of ["ingress", "worker", "dashboard", "migrate"]) {
      const service = compose.services[name];
      expect(service?.build, name).toBe(".");
      const script = service?.command?.find((part) => part.endsWith(".ts"));
      expect(script, `${name} runs a TypeScript entry point`).toBeDefined();
      expect(existsSync(resolve(root, script ?? "")), `${name}: ${script} exists`).toBe(true);
    }
    expect(existsSync(resolve(root, "Dockerfile"))).toBe(true);
  });

  it("configures Redis with AOF, no eviction and a memory limit", () => {
    const command = compose.services.redis?.command ?? [];
    const flag = (name: string) => (command.includes(name) ? command[command.indexOf(name) + 1] : undefined);
    expect(flag("--appendonly")).toBe("yes");
    expect(flag("--maxmemory-policy")).toBe("noeviction");
    // Without a limit noeviction never applies: Redis grows until the kernel kills it, losing what its AOF had not
    // written yet. With one, it refuses writes and the ingress answers 503.
    expect(flag("--maxmemory")).toMatch(/^[1-9]\d*(mb|gb)$/);
  });

  it("interpolates only in the two forms interpolate() reads (NAME, NAME:-default)", () => {
    expect(text.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}$]*)?\}/g, "")).not.toContain("$");
  });

  it("publishes the ports the ingress and the dashboard listen on, as PORT and DASHBOARD_PORT say", () => {
    for (const [variables, port, dashboardPort] of [
      [{}, "3000", "3001"],
      [{ PORT: "", DASHBOARD_PORT: "" }, "3000", "3001"],
      [{ PORT: "3310", DASHBOARD_PORT: "3311" }, "3310", "3311"],
    ] as const) {
      const { services } = load(variables);
      expect(services.ingress?.environment?.PORT, JSON.stringify(variables)).toBe(port);
      expect(services.ingress?.ports).toEqual([`${port}:${port}`]);
      expect(services.dashboard?.environment?.DASHBOARD_PORT).toBe(dashboardPort);
      expect(services.dashboard?.ports).toEqual([`${dashboardPort}:${dashboardPort}`]);
    }
  });

  it("keeps the worker scalable: no fixed container name or host port", () => {
    expect(compose.services.worker?.container_name).toBeUndefined();
    expect(compose.services.worker?.ports).toBeUndefined();
  });

  it("lets the apps finish their shutdown before Docker kills them (stop_grace_period), as npm start does", () => {
    // Docker's default, 10 s, is WORKER_SHUTDOWN_TIMEOUT_MS's own default: a worker's running jobs got no closing
    // steps, and `docker compose stop` or a redeploy SIGKILLed it mid-close. npm start waits forceKillAfterMs.
    const workerGraceMs = envSchema.shape.WORKER_SHUTDOWN_TIMEOUT_MS.parse(undefined);
    for (const name of ["ingress", "worker", "dashboard"]) {
      const period = compose.services[name]?.stop_grace_period ?? "";
      const match = /^(\d+)s$/.exec(period);
      expect(match, `${name}: stop_grace_period in seconds, e.g. 30s`).not.toBeNull();
      expect(Number(match?.[1]) * 1000, name).toBeGreaterThanOrEqual(forceKillAfterMs(workerGraceMs));
    }
  });
});
