import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/**
 * The dashboard process's own metrics, in a registry of its own (never prom-client's global one, so tests
 * can build several apps in one process). The pipeline's metrics are exported by the ingress and workers.
 */
export interface DashboardMetrics {
  readonly registry: Registry;
  readonly requests: Counter<"method" | "route" | "status">;
  readonly requestDuration: Histogram<"method" | "route">;
  readonly logins: Counter<"result">;
  readonly actions: Counter<"action" | "result">;
}

export function createMetrics({ defaultMetrics = true } = {}): DashboardMetrics {
  const registry = new Registry();
  if (defaultMetrics) collectDefaultMetrics({ register: registry, prefix: "dashboard_" });
  return {
    registry,
    requests: new Counter({
      name: "dashboard_http_requests_total",
      help: "HTTP requests answered by the dashboard, by route pattern (not URL, to bound cardinality).",
      labelNames: ["method", "route", "status"],
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: "dashboard_http_request_duration_seconds",
      help: "Time to answer a dashboard request.",
      labelNames: ["method", "route"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    logins: new Counter({
      name: "dashboard_logins_total",
      help: "Login attempts by result: success, failure (bad name or password), rate_limited, unavailable (refused: Redis, which keeps the limit, does not answer).",
      labelNames: ["result"],
      registers: [registry],
    }),
    actions: new Counter({
      name: "dashboard_actions_total",
      help: "Mutating actions (replays, bull-board retries/pauses/cleans…) by action and result (ok, error, denied); sessions ended: action logout, result ok (a logout), idle (refused for its idle limit) or expired (refused for its lifetime).",
      labelNames: ["action", "result"],
      registers: [registry],
    }),
  };
}
