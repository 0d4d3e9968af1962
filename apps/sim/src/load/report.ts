import type { Api } from "../notifications.ts";
import type { DatabaseCheck } from "./check.ts";
import type { EngineResult } from "./engine.ts";
import { formatSchedule } from "./resend.ts";
import type { LoadSet } from "./seed.ts";
import { type LatencySummary, summarize } from "./stats.ts";

/** A notification sent and never acknowledged (no delivery of it was), as the report lists it. */
export interface NeverAcknowledged {
  /** v3: the envelope id; v2: the id the ingress derives. */
  id: string;
  outTradeNo: string;
  /** HTTP requests made for it, every delivery and resend. */
  attempts: number;
  /** The verdict on its last attempt. */
  lastReason: string;
}

/** How many never-acknowledged notifications the report names (the count is `unacknowledgedNotifications`). */
export const NEVER_ACKNOWLEDGED_LISTED = 20;

/** What `load` prints (`--json` prints exactly this object). */
export interface LoadReport {
  url: string;
  api: Api;
  runId: string;
  orders: { mode: LoadSet["mode"]; count: number };
  notifications: { unique: number; duplicates: number; planned: number; sent: number };
  settings: {
    concurrency: number;
    rate: number | null;
    duplicateRatio: number;
    maxSeconds: number;
    timeoutMs: number;
    /** Waits before each resend, ms; null without --resend / --resend-schedule. */
    resendScheduleMs: number[] | null;
  };
  durationSeconds: number;
  throughputPerSecond: number;
  latencyMs: LatencySummary;
  /** HTTP requests: first deliveries (`notifications.sent`) plus resends. */
  attempts: number;
  resends: number;
  /** Count by HTTP status, "timeout" or connection error code, over every attempt. */
  answers: Record<string, number>;
  /** Deliveries acknowledged, at the first attempt or after resends. */
  acknowledged: number;
  /** Deliveries acknowledged by a resend. */
  acknowledgedAfterResend: number;
  /** Deliveries still not acknowledged at the end (after their resends, if any). */
  notAcknowledged: number;
  /** Of those, deliveries whose next resend fell after --max-seconds. */
  resendsCut: number;
  /** Unique notifications no delivery of which was acknowledged (never sent ones included when stopped early). */
  unacknowledgedNotifications: number;
  /** The first NEVER_ACKNOWLEDGED_LISTED of the notifications sent and never acknowledged. */
  neverAcknowledged: NeverAcknowledged[];
  /** Up to 5 distinct reasons attempts were not acknowledged. */
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
  neverAcknowledged: NeverAcknowledged[];
  database: DatabaseCheck | null;
  databaseSkipped?: string;
}): LoadReport {
  const { engine, set } = args;
  const unique = set.orders.length;
  const seconds = engine.elapsedMs / 1000;
  const problems: string[] = [];
  const unacknowledged = unique - engine.acknowledgedIndexes.size;
  const schedule = args.settings.resendScheduleMs;
  // Deliveries whose resends were cut by --max-seconds are reported with the stop below.
  const ended = engine.unacknowledged.filter((d) => !d.cut);
  const exhausted = ended.length;
  const lastReason = ended[0]?.lastReason ?? engine.failureSamples[0] ?? "?";
  if (schedule === null && exhausted > 0) {
    problems.push(`${exhausted} of ${engine.sent} deliveries were not acknowledged (${lastReason})`);
  } else if (schedule !== null && exhausted > 0) {
    problems.push(
      `${exhausted} of ${engine.sent} deliveries were still not acknowledged after ${schedule.length} resends each (${lastReason})`,
    );
  }
  if (engine.stopped === "time") {
    const cut =
      engine.resendsCut > 0 ? `; the next resend of ${engine.resendsCut} deliveries fell after it (not sent)` : "";
    problems.push(
      `stopped after --max-seconds ${args.settings.maxSeconds}: sent ${engine.sent} of ${engine.planned}${cut}`,
    );
  }
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
    attempts: engine.attempts,
    resends: engine.resends,
    answers: engine.answers,
    acknowledged: engine.acknowledged,
    acknowledgedAfterResend: engine.acknowledgedAfterResend,
    notAcknowledged: engine.notAcknowledged,
    resendsCut: engine.resendsCut,
    unacknowledgedNotifications: unacknowledged,
    neverAcknowledged: args.neverAcknowledged.slice(0, NEVER_ACKNOWLEDGED_LISTED),
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
  lines.push(
    `  resends       ${
      r.settings.resendScheduleMs === null
        ? "off (an unacknowledged delivery is counted, not resent)"
        : `after ${formatSchedule(r.settings.resendScheduleMs)}`
    }`,
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
    `  attempts      ${r.attempts} (${r.notifications.sent} first deliveries + ${r.resends} resends), ` +
      `${r.acknowledgedAfterResend} acknowledged after a resend`,
  );
  lines.push(
    `  acknowledged  ${r.acknowledged} deliveries; ${r.notAcknowledged} never acknowledged` +
      `${r.resendsCut > 0 ? ` (${r.resendsCut} cut by --max-seconds)` : ""}; ` +
      `${r.unacknowledgedNotifications} unique notifications never acknowledged`,
  );
  for (const sample of r.failureSamples) lines.push(`    e.g. ${sample}`);
  // At most NEVER_ACKNOWLEDGED_LISTED: their number is the line above.
  for (const n of r.neverAcknowledged) {
    lines.push(`    never acknowledged: ${n.id} (order ${n.outTradeNo}, ${n.attempts} attempts: ${n.lastReason})`);
  }
  if (r.database) {
    const d = r.database;
    lines.push(
      `  database      ${d.paid} of ${d.expectedPaid} acknowledged orders paid (${
        Object.entries(d.byStatus)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ") || "none"
      }) after ${d.waitedSeconds} s${d.settled ? "" : ", not settled"}`,
    );
    if (d.unacknowledgedOrders > 0) {
      lines.push(
        `                ${d.unacknowledgedOrders} orders never acknowledged, not required to be paid: ` +
          `${d.paidUnacknowledged} paid anyway (answer lost; applied once, as they should be), ` +
          `${d.unacknowledgedOrders - d.paidUnacknowledged} not paid`,
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
