import type { Config } from "@wpn/config";
import { createDb, type Db } from "@wpn/db";

/**
 * The dashboard's PostgreSQL handle (main.ts; tests that need the process's own pool), with the dashboard's own pool
 * size and statement timeout (DASHBOARD_PG_POOL_MAX, DASHBOARD_PG_STATEMENT_TIMEOUT_MS), not the workers'
 * (PG_POOL_MAX, @wpn/db's 30 s): its pages once held as many connections as a worker has, each for up to 30 s. A
 * statement cancelled at the bound answers its page 503 STATEMENT_TIMEOUT (app.ts). The caller closes it.
 */
export function openDashboardDb(config: Config): Db {
  return createDb({
    url: config.DATABASE_URL,
    poolMax: config.DASHBOARD_PG_POOL_MAX,
    connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS,
    queryTimeoutMs: config.DASHBOARD_PG_STATEMENT_TIMEOUT_MS,
    applicationName: "wechatpay-notify:dashboard",
  });
}
