import type { FastifyInstance } from "fastify";
import type { DashboardContext } from "../context.ts";
import { type CertificateStatus, loadKeyStatus } from "../data/keys.ts";
import { BUCKET_MS, loadOverview, type Overview, QUEUE_STATES } from "../data/overview.ts";
import { lineChart } from "../views/chart.ts";
import { badge, formatDuration, statusTone } from "../views/format.ts";
import { href, html, type SafeHtml } from "../views/html.ts";
import { EXPIRY_WARNING_DAYS } from "./keys.ts";
import { sendPage } from "./page.ts";

/** The first page on a sale day: throughput, backlog, failures and latency over the last hour. */
export function registerOverviewRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  app.get("/", async (request, reply) => {
    const [overview, keys] = await Promise.all([loadOverview(ctx), loadKeyStatus(ctx)]);
    const expiring = keys.flatMap((m) =>
      m.certificates
        .filter((c) => !c.validNow || c.daysLeft < EXPIRY_WARNING_DAYS)
        .map((c) => ({ mchid: m.mchid, ...c })),
    );
    return sendPage(request, reply, {
      title: "Overview (last hour)",
      active: "/",
      body: html`${certificateWarning(expiring)}${page(overview)}`,
    });
  });
}

const rate = (v: number) => (v >= 10 ? v.toFixed(0) : v.toFixed(2));

function page(o: Overview): SafeHtml {
  const dead = o.queues.find((q) => q.name === "notify.dead");
  const deadCount = dead ? (dead.counts.waiting ?? 0) + (dead.counts.delayed ?? 0) + (dead.counts.prioritized ?? 0) : 0;
  const backlog = o.queues
    .filter((q) => q.name !== "notify.dead")
    .reduce((sum, q) => sum + (q.counts.waiting ?? 0) + (q.counts.prioritized ?? 0) + (q.counts.delayed ?? 0), 0);
  return html`<div class="cards">
${stat("Received /s", rate(o.receivedPerSecond), `${o.receivedLastHour} in the last hour`)}
${stat("Applied /s", rate(o.appliedPerSecond), `${o.appliedLastHour} in the last hour`)}
${stat("Receipt → commit p50", formatDuration(o.latency.p50), `p99 ${formatDuration(o.latency.p99)} · ${o.latency.count} applied`)}
${stat("Queued (not dead)", String(backlog), "waiting + delayed in parse/apply/publish")}
${statLink("Dead letters", String(deadCount), "/dead-letters", deadCount > 0 ? "bad" : "ok")}
${statLink("In review", String(o.inReview), "/reviews", o.inReview > 0 ? "warn" : "ok")}
${stat("Failing now", String(o.failing), "received this hour, FAILED or DEAD")}
</div>
<div class="charts">
<div class="card"><div class="stat"><div class="label">Notifications per second, received and applied</div></div>${lineChart(
    {
      title: "Notifications per second (1-minute buckets)",
      start: o.start,
      stepMs: BUCKET_MS,
      series: [
        { name: "received/s", color: "#1a5fb4", values: o.receivedRate },
        { name: "applied/s", color: "#26a269", values: o.appliedRate },
      ],
      formatValue: rate,
    },
  )}</div>
<div class="card"><div class="stat"><div class="label">Receipt → commit latency, per minute of commit</div></div>${lineChart(
    {
      title: "Receipt to commit latency",
      start: o.start,
      stepMs: BUCKET_MS,
      series: [
        { name: "p50", color: "#26a269", values: o.latencyP50 },
        { name: "p99", color: "#c64600", values: o.latencyP99 },
      ],
      formatValue: (v) => formatDuration(v),
    },
  )}</div>
</div>
<p class="muted">Times are UTC. Each point is a whole minute, but the last: the rates' last point is the last 60 s (as the cards above), the latencies' the current minute so far. The applied series counts notifications received within the last two hours.</p>
<h2>Queues</h2>
<table><thead><tr><th>Queue</th>${QUEUE_STATES.map((s) => html`<th class="num">${s}</th>`)}<th></th></tr></thead>
<tbody>${o.queues.map(
    (
      q,
    ) => html`<tr><td class="mono">${q.name}</td>${QUEUE_STATES.map((s) => html`<td class="num">${q.counts[s] ?? 0}</td>`)}
<td>${q.paused ? badge("PAUSED", "bad") : badge("running", "ok")}</td></tr>`,
  )}</tbody></table>
<div class="charts">
<div><h2>Status of notifications received this hour</h2>
${
  o.statuses.length === 0
    ? html`<p class="muted">Nothing received this hour.</p>`
    : html`<table><thead><tr><th>Status</th><th class="num">Count</th><th class="num">Share</th></tr></thead><tbody>
${o.statuses.map(
  (
    s,
  ) => html`<tr><td><a href="${href("/notifications", { status: s.status, from: new Date(o.start).toISOString() })}">${badge(s.status, statusTone(s.status))}</a></td>
<td class="num">${s.count}</td><td class="num">${percent(s.count, o.receivedLastHour)}</td></tr>`,
)}</tbody></table>`
}</div>
<div><h2>Failures by error code</h2>
<p class="muted">The codes the notifications received this hour carry now — failing, dead, in review, or replayed and
waiting. Applying a notification clears its code; its timeline keeps the failed attempts.</p>
${
  o.failures.length === 0
    ? html`<p class="muted">No notification received this hour carries an error code now.</p>`
    : html`<table><thead><tr><th>Error code</th><th class="num">Carried by</th><th class="num">Share of received</th><th class="num">Still failing / dead</th></tr></thead><tbody>
${o.failures.map(
  (f) =>
    html`<tr><td><code>${f.code}</code></td><td class="num">${f.total}</td><td class="num">${percent(f.total, o.receivedLastHour)}</td><td class="num">${f.failing}</td></tr>`,
)}</tbody></table>`
}
<p class="muted">${o.recovered} notification(s) received this hour failed before they were applied (not counted above).</p></div>
</div>`;
}

/** Certificates about to expire stop verification when they do: worth a banner on the first page. */
function certificateWarning(expiring: (CertificateStatus & { mchid: string })[]): SafeHtml {
  if (expiring.length === 0) return html``;
  const refused = expiring.some((c) => !c.validNow);
  return html`<div class="flash ${refused ? "bad" : "warn"}" role="alert">
${expiring.map(
  (c) => html`<div>Merchant ${c.mchid}: platform certificate <code>${c.serial}</code> ${certificateState(c)}.</div>`,
)}
<a href="/keys">Key status →</a></div>`;
}

/** As the Keys page judges it (`validNow`, `expired`: the ingress's rule). */
function certificateState(c: CertificateStatus): string {
  if (c.refused) return `is refused by the ingress (${c.refused})`;
  if (c.validNow) return `expires in ${c.daysLeft} day(s)`;
  return c.expired ? "has expired" : "is not yet valid";
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)} %` : "—";
}

function stat(label: string, value: string, sub: string): SafeHtml {
  return html`<div class="card stat"><div class="label">${label}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
}

function statLink(label: string, value: string, path: string, tone: "ok" | "warn" | "bad"): SafeHtml {
  return html`<a class="card stat" style="text-decoration:none;color:inherit" href="${path}"><div class="label">${label}</div>
<div class="value">${badge(value, tone)}</div><div class="sub">open the list →</div></a>`;
}
