import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import type { DashboardContext } from "../context.ts";
import { withTimeout } from "../timeout.ts";

const CHECK_TIMEOUT_MS = 2_000;

/** "ok" or "down": the route is public, so the reason (which can name a database role or host) only goes to the log. */
async function check(run: () => Promise<unknown>, what: string, log: FastifyBaseLogger): Promise<"ok" | "down"> {
  try {
    await withTimeout(run(), CHECK_TIMEOUT_MS, what);
    return "ok";
  } catch (error) {
    log.warn({ err: error instanceof Error ? error.message : String(error) }, `${what} check failed`);
    return "down";
  }
}

/**
 * Liveness (the process answers) and readiness (PostgreSQL and Redis answer). With /metrics these are the
 * only routes reachable without a session; they reveal nothing but up/down.
 */
export function registerHealthRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  app.get("/health/live", { config: { access: "public" } }, async () => ({ status: "ok" }));

  app.get("/health/ready", { config: { access: "public" } }, async (request, reply) => {
    const [postgres, redis] = await Promise.all([
      check(() => ctx.db.pool.query("SELECT 1"), "PostgreSQL", request.log),
      check(() => ctx.redis.ping(), "Redis", request.log),
    ]);
    const ready = postgres === "ok" && redis === "ok";
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ok" : "unavailable", checks: { postgres, redis } });
  });

  // Firewall this in production (see README): it is unauthenticated so Prometheus can scrape it.
  app.get("/metrics", { config: { access: "public" } }, async (_request, reply) => {
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });
}
