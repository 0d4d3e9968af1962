import type { Api } from "../notifications.ts";
import type { DatabaseCheck } from "./check.ts";
import type { EngineResult } from "./engine.ts";
import type { LoadSet } from "./seed.ts";
import { type LatencySummary, summarize } from "./stats.ts";

/** What `load` prints (`--json` prints exactly this object). */
export interface LoadReport {
  url: string;
  api: Api;
  runId: string;
  orders: { mode: LoadSet["mode"]; count: number };
  notifications: { unique: number; duplicates: number; planned: number; sent: number };
  settings: { concurrency: number; rate: number | null; duplicateRatio: number; maxSeconds: number; timeoutMs: number };
  durationSeconds: number;
  throughputPerSecond: number;
  latencyMs: LatencySummary;
  /** Count by HTTP status, "timeout" or connection error code. */
  answers: Record<string, number>;
  acknowledged: number;
  notAcknowledged: number;
  /** Unique notifications never acknowledged (load does not redeliver). */
  unacknowledgedNotifications: number;
  failureSamples: string[];
  stopped: "time" | "interrupted" | null;
  /** null without a database. */
  database: DatabaseCheck | null;
  databaseSkipped?: string;
  ok: boolean;
  problems: string[];
}

export function buildReport(args: {
  url: URL;
  api: Api;
  set: LoadSet;
  engine: EngineResult;
  settings: LoadReport["settings"];
  database: DatabaseCheck | null;
  databaseSkipped?: string;
}): LoadReport {
  const { engine, set } = args;
  const unique = set.orders.length;
  const seconds = engine.elapsedMs / 1000;
  const problems: string[] = [];
  const unacknowledged = unique - engine.acknowledgedIndexes.size;
  if (engine.notAcknowledged > 0) {
    problems.push(
      `${engine.notAcknowledged} of ${engine.sent} deliveries were not acknowledged (${engine.failureSamples[0] ?? "?"})`,
    );
  }
  if (engine.stopped === "time")
    problems.push(`stopped after --max-seconds ${args.settings.maxSeconds}: sent ${engine.sent} of ${engine.planned}`);
  if (engine.stopped === "interrupted") problems.push(`interrupted: sent ${engine.sent} of ${engine.planned}`);
  if (args.database) problems.push(...args.database.problems);
  return {
    url: args.url.toString(),
    api: args.api,
    runId: set.runId,
    orders: { mode: set.mode, count: unique },
    notifications: { unique, duplicates: engine.planned - unique, planned: engine.planned, sent: engine.sent },
    settings: args.settings,
    durationSeconds: Math.round(seconds * 1000) / 1000,
    throughputPerSecond: seconds > 0 ? Math.round((engine.sent / seconds) * 10) / 10 : 0,
    latencyMs: summarize(engine.latencies),
    answers: engine.answers,
    acknowledged: engine.acknowledged,
    notAcknowledged: engine.notAcknowledged,
    unacknowledgedNotifications: unacknowledged,
    failureSamples: engine.failureSamples,
    stopped: engine.stopped ?? null,
    database: args.database,
    ...(args.databaseSkipped ? { databaseSkipped: args.databaseSkipped } : {}),
    ok: problems.length === 0,
    problems,
  };
}

export function formatReport(r: LoadReport): string {
  const lines: string[] = [];
  const l = r.latencyMs;
  lines.push(`load run ${r.runId} → ${r.url} (${r.api})`);
  lines.push(
    `  orders        ${r.orders.count} (${r.orders.mode === "seed" ? "seeded" : r.orders.mode === "existing" ? "existing NOTPAY orders" : "not in any database"})`,
  );
  lines.push(
    `  sent          ${r.notifications.sent} of ${r.notifications.planned} (${r.notifications.unique} unique + ${r.notifications.duplicates} duplicates), ` +
      `concurrency ${r.settings.concurrency}, ${r.settings.rate === null ? "as fast as possible" : `target ${r.settings.rate}/s`}`,
  );
  lines.push(`  duration      ${r.durationSeconds} s, throughput ${r.throughputPerSecond}/s`);
  lines.push(`  latency ms    p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  max ${l.max}  (mean ${l.mean})`);
  lines.push(
    `  answers       ${
      Object.entries(r.answers)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k}: ${v}`)
        .join(", ") || "none"
    }`,
  );
  lines.push(
    `  acknowledged  ${r.acknowledged} deliveries; ${r.unacknowledgedNotifications} unique notifications never acknowledged`,
  );
  for (const sample of r.failureSamples) lines.push(`    e.g. ${sample}`);
  if (r.database) {
    const d = r.database;
    lines.push(
      `  database      ${d.paid} of ${d.expectedPaid} acknowledged orders paid (${
        Object.entries(d.byStatus)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ") || "none"
      }) after ${d.waitedSeconds} s${d.settled ? "" : ", not settled"}`,
    );
    if (d.paidUnacknowledged > 0) {
      lines.push(
        `                ${d.paidUnacknowledged} more paid whose answer was lost (applied once, as they should be)`,
      );
    }
    if (Object.keys(d.reviewReasons).length > 0) {
      lines.push(
        `                review: ${Object.entries(d.reviewReasons)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")}`,
      );
    }
    lines.push(
      `                stock: ${d.stock.skus - d.stock.wrong.length} of ${d.stock.skus} SKUs equal initial − paid quantities`,
    );
    lines.push(
      `                movements: ${d.movements.found} PAYMENT movements, ${d.movements.expected} expected ` +
        `(missing ${d.movements.missing}, extra ${d.movements.extra}, wrong ${d.movements.wrongDelta})`,
    );
  } else {
    lines.push(`  database      not checked: ${r.databaseSkipped ?? "no DATABASE_URL"}`);
  }
  lines.push(r.ok ? "OK" : `FAILED:\n${r.problems.map((p) => `  - ${p}`).join("\n")}`);
  return lines.join("\n");
}
