import type { FastifyInstance } from "fastify";
import type { DashboardContext } from "../context.ts";
import { type ForeignOrder, loadTimeline, type Timeline } from "../data/timeline.ts";
import { hasControlCharacter } from "../input.ts";
import { badge, formatFen, formatJson, formatTime, ownerFilter, statusTone, subMchidLink } from "../views/format.ts";
import { href, html, type SafeHtml } from "../views/html.ts";
import { sendError, sendPage } from "./page.ts";

/** One notification: what it is, the order it touched, and its history across ingress, queues and database. */
export function registerNotificationRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  app.get("/notifications/:id", async (request, reply) => {
    const { id } = request.params as { id: string };
    if (id.length > 256) return sendError(request, reply, 400, "BAD_REQUEST", "The id is longer than 256 characters.");
    if (hasControlCharacter(id)) {
      return sendError(request, reply, 400, "BAD_REQUEST", "The id contains a control character.");
    }
    const timeline = await loadTimeline(ctx, id, request.log);
    const known = timeline.notification || timeline.jobs.length > 0 || timeline.receipt;
    return sendPage(request, reply, {
      title: `Notification ${id}`,
      active: "/notifications",
      status: known ? 200 : 404,
      body: known
        ? page(timeline)
        : html`<div class="card">No notification <code>${id}</code> in PostgreSQL, BullMQ or the ingress receipts.
<a href="${href("/notifications", { q: id })}">Search for it</a></div>`,
    });
  });
}

function page(t: Timeline): SafeHtml {
  return html`<div class="charts">
${summary(t)}
${orderCard(t)}
</div>
<h2>Timeline</h2>
<div class="card">
${
  t.entries.length === 0
    ? html`<p class="muted">No events recorded yet.</p>`
    : html`<ol class="timeline">
${t.entries.map(
  (e) => html`<li>
  <span class="mono">${formatTime(e.at)}</span>
  <span class="src">${e.source}</span>
  <span>${badge(e.title, e.tone)}${e.detail !== undefined && e.detail !== null && e.detail !== "" ? html`<div class="detail mono">${typeof e.detail === "string" ? e.detail : formatJson(e.detail)}</div>` : ""}</span>
</li>`,
)}
</ol>`
}
</div>
${jobsTable(t)}`;
}

function summary(t: Timeline): SafeHtml {
  const n = t.notification;
  if (!n) {
    return html`<div class="card"><p>Not yet recorded in PostgreSQL: no worker has parsed it. It is still in Redis (see the timeline).</p></div>`;
  }
  const headers = (n.headers ?? {}) as Record<string, unknown>;
  return html`<div class="card"><dl class="kv">
<dt>Status</dt><dd>${badge(n.status, statusTone(n.status))}</dd>
<dt>Event</dt><dd>${n.eventType} <span class="muted">(API ${n.apiVersion})</span></dd>
${n.wechatId ? html`<dt>WeChat notification id</dt><dd><a class="mono" href="${href("/notifications", { id: n.wechatId })}">${n.wechatId}</a></dd>` : ""}
<dt>Merchant</dt><dd class="mono">${n.mchid ?? "—"}</dd>
${n.subMchid ? html`<dt>Sub-merchant</dt><dd><a class="mono" href="${href("/notifications", { subMchid: n.subMchid })}">${n.subMchid}</a>${subMchidNote(n)}</dd>` : ""}
<dt>Received</dt><dd class="mono">${formatTime(n.receivedAt)}</dd>
<dt>Applied</dt><dd class="mono">${formatTime(n.appliedAt)}</dd>
<dt>Attempts</dt><dd>${n.attempts}</dd>
<dt>Last error</dt><dd>${n.errorCode ? html`<code>${n.errorCode}</code> ` : ""}${n.lastError ?? (n.errorCode ? "" : "—")}</dd>
<dt>out_trade_no</dt><dd class="mono">${n.outTradeNo ? html`<a href="${href("/notifications", { outTradeNo: n.outTradeNo, ...ownerFilter(n.mchid, n.subMchid) })}">${n.outTradeNo}</a>` : "—"}</dd>
<dt>transaction_id</dt><dd class="mono">${n.transactionId ?? "—"}</dd>
${n.outRefundNo ? html`<dt>out_refund_no</dt><dd class="mono">${n.outRefundNo}</dd>` : ""}
<dt>Signing serial</dt><dd class="mono">${typeof headers.serial === "string" ? headers.serial : "—"}</dd>
<dt>Request id</dt><dd class="mono">${typeof headers.requestId === "string" ? headers.requestId : "—"}</dd>
<dt>Body</dt><dd class="muted">${t.bodyBytes ?? 0} bytes, kept encrypted (not shown)</dd>
<dt>Deliveries</dt><dd>${t.receipt ? `${t.receipt.count} (receipt kept by the ingress)` : "no ingress receipt (expired or never recorded)"}</dd>
</dl></div>`;
}

function orderCard(t: Timeline): SafeHtml {
  const o = t.order;
  const r = t.refund;
  const [first, ...more] = t.foreignOrders;
  if (first) {
    // Other merchants' orders under the number: who owns them, never their amounts, payments or refunds.
    const owner = (f: ForeignOrder) =>
      f.subMchid ? html`${f.mchid} / sub-merchant ${subMchidLink(f.subMchid)}` : f.mchid;
    const whose =
      more.length === 0
        ? html`merchant ${owner(first)}'s order`
        : html`the orders of merchants ${[first, ...more].map((f, i) => html`${i > 0 ? ", " : ""}${owner(f)}`)}`;
    return html`<div class="card"><p>${badge("Not linked", "warn")} out_trade_no <code>${first.outTradeNo}</code> belongs to ${whose} — not this notification's${foreignWhy(t)}. No order or refund details are shown.</p></div>`;
  }
  if (!o && !r) return html`<div class="card muted">No order or refund linked (yet).</div>`;
  return html`<div class="card">
${
  o
    ? html`<h2 style="margin-top:0">Order</h2><dl class="kv">
<dt>out_trade_no</dt><dd class="mono">${o.outTradeNo}</dd>
<dt>Status</dt><dd>${badge(o.status, o.status === "SUCCESS" ? "ok" : o.status === "PAYMENT_REVIEW" ? "warn" : "info")}</dd>
${o.reviewReason ? html`<dt>Review reason</dt><dd><code>${o.reviewReason}</code></dd>` : ""}
<dt>Amount</dt><dd>${formatFen(o.amountTotal, o.currency)}</dd>
<dt>Paid</dt><dd>${formatFen(o.paidTotal, o.paidCurrency ?? o.currency)}</dd>
<dt>Refunded</dt><dd>${formatFen(o.refundedTotal, o.currency)}</dd>
<dt>Merchant / app</dt><dd class="mono">${o.mchid}${o.subMchid ? html` / sub ${subMchidLink(o.subMchid)}` : ""} · ${o.appid}</dd>
<dt>transaction_id</dt><dd class="mono">${o.transactionId ?? "—"}</dd>
<dt>Paid at</dt><dd class="mono">${formatTime(o.paidAt)}</dd>
<dt>Payer</dt><dd class="muted">not shown</dd>
</dl>`
    : ""
}
${
  r
    ? html`<h2>Refund</h2><dl class="kv">
<dt>out_refund_no</dt><dd class="mono">${r.outRefundNo}</dd>
<dt>refund_id</dt><dd class="mono">${r.refundId ? html`<a href="${href("/notifications", { q: r.refundId })}">${r.refundId}</a>` : "—"}</dd>
<dt>Status</dt><dd>${r.status}</dd>
<dt>Refunded</dt><dd>${formatFen(r.amountRefund, o?.currency)} of ${formatFen(r.amountTotal, o?.currency)}</dd>
${r.reviewReason ? html`<dt>Not counted</dt><dd><code>${r.reviewReason}</code></dd>` : ""}
<dt>Succeeded at</dt><dd class="mono">${formatTime(r.successTime)}</dd>
</dl>`
    : ""
}
</div>`;
}

/**
 * Where the sub-merchant comes from, when it is not authenticated: an APIv2 refund names it only in the outer XML,
 * which carries no sign (only req_info is authenticated, by decrypting it). It is still what the worker compared.
 */
function subMchidNote(n: { apiVersion: string; eventType: string }): SafeHtml | string {
  return n.apiVersion === "v2" && n.eventType.startsWith("REFUND.")
    ? html` <span class="muted">(outer XML of an APIv2 refund: not signed)</span>`
    : "";
}

/** Why the order is not linked, beyond the merchant ids shown. */
function foreignWhy(t: Timeline): SafeHtml | string {
  const n = t.notification;
  if (n?.mchid === null) return " (this notification records no merchant to compare)";
  // A verdict of the worker before orders were per merchant (migration 20261207110002): it found that order.
  if (n?.errorCode === "MCHID_MISMATCH") return " (the worker left that order alone: MCHID_MISMATCH)";
  if (n?.subMchid) return html` (this notification names sub-merchant ${subMchidLink(n.subMchid)})`;
  // A sub-merchant's order, while the row records none: a direct merchant's notification, or a row parsed before
  // migration 20261202130000 (its order is found by the sub-merchant its body names, which the row does not keep).
  if (t.foreignOrders.some((f) => f.subMchid !== null && f.mchid === n?.mchid)) {
    return " (this notification records no sub-merchant)";
  }
  return "";
}

function jobsTable(t: Timeline): SafeHtml {
  if (t.jobs.length === 0)
    return html`<p class="muted">No BullMQ job left in Redis for this id (completed jobs are kept about an hour).</p>`;
  return html`<h2>Jobs in Redis</h2>
<table><thead><tr><th>Queue</th><th>Job id</th><th>State</th><th class="num">Attempts</th><th>Enqueued</th><th>Last start</th><th>Finished</th><th>Failure</th></tr></thead>
<tbody>${t.jobs.map(
    (j) => html`<tr>
<td class="mono">${j.queue}</td><td class="mono">${j.id}</td><td>${j.state}</td><td class="num">${j.attemptsMade}</td>
<td class="mono">${formatTime(j.timestamp)}</td><td class="mono">${j.processedOn ? formatTime(j.processedOn) : ""}</td>
<td class="mono">${j.finishedOn ? formatTime(j.finishedOn) : ""}</td>
<td>${j.unreadable !== undefined ? j.unreadable : j.deadLetter ? html`<code>${j.deadLetter.code}</code> ${j.deadLetter.message}` : j.failedReason && j.state !== "failed" ? `earlier attempt: ${j.failedReason}` : (j.failedReason ?? "")}</td>
</tr>`,
  )}</tbody></table>`;
}
