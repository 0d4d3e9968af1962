import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

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
}
const compose = parse(readFileSync(resolve(root, "docker-compose.yml"), "utf8"), { merge: true }) as {
  services: Record<string, Service>;
};

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

  it("configures Redis with AOF and no eviction", () => {
    const command = compose.services.redis?.command ?? [];
    const flag = (name: string) => command[command.indexOf(name) + 1];
    expect(flag("--appendonly")).toBe("yes");
    expect(flag("--maxmemory-policy")).toBe("noeviction");
  });

  it("keeps the worker scalable: no fixed container name or host port", () => {
    expect(compose.services.worker?.container_name).toBeUndefined();
    expect(compose.services.worker?.ports).toBeUndefined();
  });
});
