import type { FastifyInstance } from "fastify";
import type { DashboardContext } from "../context.ts";
import {
  MAX_PAGE,
  NOTIFICATION_STATUSES,
  type NotificationRow,
  type NotificationSearch,
  PAGE_SIZE,
  parseSearch,
  searchNotifications,
} from "../data/notifications.ts";
import { badge, formatTime, statusTone, subMerchant, toDateTimeLocal } from "../views/format.ts";
import { href, html, type SafeHtml } from "../views/html.ts";
import { sendPage } from "./page.ts";

/** Notification search: by out_trade_no, transaction_id, id, merchant, sub-merchant, status and time range. */
export function registerNotificationSearchRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  app.get("/notifications", async (request, reply) => {
    const { search, errors } = parseSearch(request.query as Record<string, unknown>);
    const result = errors.length ? { rows: [], hasMore: false } : await searchNotifications(ctx.db.prisma, search);
    return sendPage(request, reply, {
      title: "Notifications",
      active: "/notifications",
      status: errors.length ? 400 : 200,
      body: html`${searchForm(search)}
${errors.length ? html`<div class="flash bad" role="alert">${errors.map((e) => html`<div>${e}</div>`)}</div>` : ""}
${errors.length ? "" : resultsTable(result.rows, search, result.hasMore)}`,
    });
  });
}

function searchForm(search: NotificationSearch): SafeHtml {
  return html`<div class="card"><form class="search" method="get" action="/notifications">
  <label>Any id <input name="q" value="${search.q ?? ""}" placeholder="id, out_trade_no, transaction_id…"></label>
  <label>out_trade_no <input name="outTradeNo" value="${search.outTradeNo ?? ""}"></label>
  <label>transaction_id <input name="transactionId" value="${search.transactionId ?? ""}"></label>
  <label>Notification id <input name="id" value="${search.id ?? ""}"></label>
  <label>Merchant (mchid) <input name="mchid" value="${search.mchid ?? ""}"></label>
  <label>Sub-merchant (sub_mchid) <input name="subMchid" value="${search.subMchid ?? ""}"></label>
  <label>Status <select name="status">
    <option value="">any</option>
    ${NOTIFICATION_STATUSES.map((s) => html`<option value="${s}" ${search.status === s ? html`selected` : ""}>${s}</option>`)}
  </select></label>
  <label>Received from (UTC) <input type="datetime-local" name="from" value="${toDateTimeLocal(search.from)}"></label>
  <label>Received before (UTC) <input type="datetime-local" name="to" value="${toDateTimeLocal(search.to)}"></label>
  <div><button type="submit">Search</button> <a href="/notifications">Reset</a></div>
</form></div>`;
}

function searchQuery(search: NotificationSearch, page: number): Record<string, string | number | undefined> {
  return {
    q: search.q,
    id: search.id,
    outTradeNo: search.outTradeNo,
    transactionId: search.transactionId,
    mchid: search.mchid,
    subMchid: search.subMchid,
    status: search.status,
    from: search.from?.toISOString(),
    to: search.to?.toISOString(),
    page: page > 0 ? page : undefined,
  };
}

function resultsTable(rows: NotificationRow[], search: NotificationSearch, hasMore: boolean): SafeHtml {
  if (rows.length === 0) {
    // A page past the end (a bookmarked or typed page=, results pruned since) is not a search without results.
    return search.page > 0
      ? html`<div class="card muted">No notification on page ${search.page + 1} of this search: it has fewer results. Go to its <a href="${href("/notifications", searchQuery(search, 0))}">first page</a>.</div>`
      : html`<div class="card muted">No notification matches.</div>`;
  }
  const first = search.page * PAGE_SIZE + 1;
  return html`<p class="muted">Showing ${first}–${first + rows.length - 1}, newest first.</p>
<table>
<thead><tr><th>Received</th><th>Notification id</th><th>Event</th><th>Merchant</th><th>Status</th><th class="num">Attempts</th><th>Error</th><th>out_trade_no</th><th>transaction_id / refund</th><th>Applied</th></tr></thead>
<tbody>
${rows.map(
  (n) => html`<tr>
  <td class="mono">${formatTime(n.receivedAt)}</td>
  <td class="mono"><a href="${href(`/notifications/${encodeURIComponent(n.id)}`)}">${n.id}</a></td>
  <td>${n.eventType} <span class="muted">${n.apiVersion}</span></td>
  <td class="mono">${n.mchid ?? "—"}${subMerchant(n.subMchid)}</td>
  <td>${badge(n.status, statusTone(n.status))}</td>
  <td class="num">${n.attempts}</td>
  <td class="mono">${n.errorCode ?? ""}</td>
  <td class="mono">${n.outTradeNo ?? ""}</td>
  <td class="mono">${n.transactionId ?? ""}${n.transactionId && n.outRefundNo ? html`<br>` : ""}${n.outRefundNo ? html`<span class="muted">refund</span> ${n.outRefundNo}` : ""}</td>
  <td class="mono">${n.appliedAt ? formatTime(n.appliedAt) : ""}</td>
</tr>`,
)}
</tbody></table>
<div class="pager">
${search.page > 0 ? html`<a href="${href("/notifications", searchQuery(search, search.page - 1))}">← Newer</a>` : ""}
${hasMore ? olderLink(search) : ""}
</div>`;
}

/** The next page, up to MAX_PAGE; past it the search must be narrowed (a later page is refused). */
function olderLink(search: NotificationSearch): SafeHtml {
  return search.page < MAX_PAGE
    ? html`<a href="${href("/notifications", searchQuery(search, search.page + 1))}">Older →</a>`
    : html`<span class="muted">More match: narrow the search (a time range) to see older ones.</span>`;
}
