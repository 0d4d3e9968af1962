import { certificateValidAt } from "@wpn/wechatpay";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import { lastCertificateExpiry, MERCHANT_REFUSAL_CODES, type MerchantRegistry } from "../merchants/registry.ts";
import type { IngressMetrics } from "../metrics.ts";
import type { QueueSampler } from "../queue-sampler.ts";

export interface HealthContext {
  redis: Redis;
  sampler: QueueSampler;
  merchants: MerchantRegistry;
  metrics: IngressMetrics;
  /** True once shutdown began: the load balancer should stop sending. */
  isDraining: () => boolean;
}

/**
 * - `GET /health/live`: the process serves HTTP (200 as soon as it listens).
 * - `GET /health/ready`: 200 when Redis answered the last background sample (one sent since the connection was last
 *   made: a close resets the snapshot, see QueueSampler), the connection is ready, the last write probe passed
 *   (`redisWrite`: "ok", else why not — READONLY, OOM, TIMEOUT, …; see QueueSampler), the default merchant has a key
 *   valid now (`keys` lists those; a certificate judged as verification judges it, `certificateValidAt`: a minute
 *   of clock difference allowed either side), and Redis's eviction policy cannot evict jobs (`redisEviction`);
 *   otherwise 503.
 *   `certificatesValidUntil`: when the default merchant's last platform certificate stops verifying (its notAfter plus
 *   the minute of clock difference verification allows; null without any), the warning ahead of the moment its
 *   certificate-signed notifications are refused; it does not change readiness.
 *   Backpressure (waiting jobs above the ceiling) is reported but keeps 200: WeChat's resends would only add load, so the ingress keeps accepting.
 *   `merchantsLoaded` (false while the merchant table has not been read: its merchants get 503) is reported but keeps
 *   200 too: without the table a process cannot tell a deployment with `Merchant` rows from one without, and the
 *   environment's merchant needs only Redis — a fleet restarted during a PostgreSQL outage must keep taking its
 *   notifications, while the table's merchants' 503s are resent by WeChat. `merchantRefusals` (what the last reload of
 *   the table refused, by log code: MerchantRegistry.refusals, `{}` when nothing) is reported and keeps 200 too: one
 *   tenant's misconfigured row must not take the others' ingress out of the balancer.
 * - `GET /metrics`: Prometheus text from the ingress's own registry.
 * None of them costs a Redis round trip: probes read the sampler's last snapshot.
 */
export async function healthRoutes(app: FastifyInstance, ctx: HealthContext): Promise<void> {
  app.get("/health/live", async () => ({ status: "live" }));

  app.get("/health/ready", async (_request, reply) => {
    const queue = ctx.sampler.snapshot;
    const redisUp = queue.redisUp && ctx.redis.status === "ready";
    // Keys that can verify now: an expired (or not yet valid) certificate alone would refuse every notification.
    // Judged as verification judges it (certificateValidAt: a minute of clock difference either side), so that
    // readiness and the answers agree at the boundary.
    const now = new Date();
    const keys = ctx.merchants.defaultMerchant.keys
      .describe()
      .filter(
        (k) =>
          k.kind === "publicKey" ||
          (k.notBefore !== undefined &&
            k.notAfter !== undefined &&
            certificateValidAt({ notBefore: k.notBefore, notAfter: k.notAfter }, now)),
      )
      .map((entry) => entry.id);
    const draining = ctx.isDraining();
    const writable = queue.write === "ok";
    const ready = redisUp && writable && keys.length > 0 && !draining && !queue.evictsJobs;
    const certificatesValidUntil = lastCertificateExpiry(ctx.merchants.defaultMerchant.keys);
    ctx.metrics.merchantsLoaded.set(ctx.merchants.size);
    ctx.metrics.merchantTableLoaded.set(ctx.merchants.tableLoaded ? 1 : 0);
    return reply.code(ready ? 200 : 503).send({
      status: ready ? "ready" : "not_ready",
      draining,
      redis: redisUp ? "up" : "down",
      redisWrite: queue.write ?? null,
      redisEviction: queue.eviction ?? null,
      keys,
      certificatesValidUntil: certificatesValidUntil?.toISOString() ?? null,
      merchants: ctx.merchants.size,
      merchantsLoaded: ctx.merchants.tableLoaded,
      merchantRefusals: ctx.merchants.refusals,
      queue: { waiting: queue.waiting ?? null, ceiling: queue.ceiling, backpressure: queue.backpressure },
    });
  });

  app.get("/metrics", async (_request, reply) => {
    ctx.metrics.merchantsLoaded.set(ctx.merchants.size);
    ctx.metrics.merchantTableLoaded.set(ctx.merchants.tableLoaded ? 1 : 0);
    // Counted over every merchant: at scrape time only, not on each readiness probe (the answer does not show it).
    ctx.metrics.merchantKeysKept.set(ctx.merchants.keptKeys);
    const refusals = ctx.merchants.refusals;
    for (const code of MERCHANT_REFUSAL_CODES) ctx.metrics.merchantRefusals.set({ code }, refusals[code] ?? 0);
    const expiry = ctx.merchants.earliestCertificateExpiry();
    ctx.metrics.certificateExpirySeconds.set(
      expiry === undefined ? Number.POSITIVE_INFINITY : (expiry.notAfter.getTime() - Date.now()) / 1000,
    );
    const text = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(text);
  });
}
