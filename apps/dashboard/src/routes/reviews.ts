import type { FastifyInstance } from "fastify";
import type { DashboardContext } from "../context.ts";
import { NOTIFICATION_REVIEW_DAYS } from "../data/review-notifications.ts";
import { loadReviews, NO_REASON, REVIEW_LIMIT } from "../data/reviews.ts";
import { hasControlCharacter } from "../input.ts";
import { badge, formatFen, formatTime, ownerFilter, subMerchant } from "../views/format.ts";
import { href, html } from "../views/html.ts";
import { sendError, sendPage } from "./page.ts";

/**
 * Orders in PAYMENT_REVIEW and refunds not counted, with their reason: the lists a merchant's support team works
 * through.
 */
export function registerReviewRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  app.get("/reviews", async (request, reply) => {
    const { reason: rawReason } = request.query as { reason?: unknown };
    // Reported, not ignored, as on the search page: the page listed every reason and said nothing.
    if (Array.isArray(rawReason)) {
      return sendError(request, reply, 400, "BAD_REQUEST", "The reason is given more than once.");
    }
    const reason = typeof rawReason === "string" && rawReason.trim() !== "" ? rawReason.trim().slice(0, 64) : undefined;
    if (reason !== undefined && hasControlCharacter(reason)) {
      return sendError(request, reply, 400, "BAD_REQUEST", "The reason contains a control character.");
    }
    const { orders, refunds, notifications, byReason, total } = await loadReviews(ctx.db.prisma, reason, ctx.now());
    return sendPage(request, reply, {
      title: "In review",
      active: "/reviews",
      body: html`<div class="cards">
<div class="card stat"><div class="label">In review</div><div class="value">${total}</div></div>
${byReason.map(
  (
    g,
  ) => html`<a class="card stat" style="text-decoration:none;color:inherit" href="${href("/reviews", { reason: g.reason })}">
<div class="label">${g.reason}</div><div class="value">${g.count}</div></a>`,
)}
</div>
${reason ? html`<p>Showing reason <code>${reason}</code> · <a href="/reviews">show all</a></p>` : ""}
<h2>Orders in payment review</h2>
${
  orders.length === 0
    ? html`<div class="card muted">No order is waiting for review.</div>`
    : html`<table><thead><tr><th>Updated</th><th>out_trade_no</th><th>Reason</th><th>Merchant</th><th class="num">Amount</th><th class="num">Paid</th><th>transaction_id</th><th>Paid at</th><th></th></tr></thead>
<tbody>${orders.map(
        (o) => html`<tr>
<td class="mono">${formatTime(o.updatedAt)}</td>
<td class="mono">${o.outTradeNo}</td>
<td>${badge(o.reviewReason ?? NO_REASON, "warn")}</td>
<td class="mono">${o.mchid}${subMerchant(o.subMchid)}</td>
<td class="num">${formatFen(o.amountTotal, o.currency)}</td>
<td class="num">${formatFen(o.paidTotal, o.paidCurrency ?? o.currency)}</td>
<td class="mono">${o.transactionId ?? "—"}${o.secondCharges.map((t) => html`<br><span class="muted">second charge</span> ${t}`)}</td>
<td class="mono">${formatTime(o.paidAt)}</td>
<td><a href="${href("/notifications", { outTradeNo: o.outTradeNo, ...ownerFilter(o.mchid, o.subMchid) })}">notifications</a></td>
</tr>`,
      )}</tbody></table>
${orders.length === REVIEW_LIMIT ? html`<p class="muted">Showing the ${REVIEW_LIMIT} most recent.</p>` : ""}`
}
<h2>Refunds not counted</h2>
<p class="muted">Recorded as WeChat reported them, but left out of the order's refunded total.</p>
${
  refunds.length === 0
    ? html`<div class="card muted">No refund is waiting for review.</div>`
    : html`<table><thead><tr><th>Updated</th><th>out_refund_no</th><th>Reason</th><th>Status</th><th>out_trade_no</th><th>Merchant</th><th class="num">Refund</th><th class="num">Order total (reported)</th><th class="num">Order refunded so far</th><th>refund_id</th><th>transaction_id</th><th></th></tr></thead>
<tbody>${refunds.map(
        (r) => html`<tr>
<td class="mono">${formatTime(r.updatedAt)}</td>
<td class="mono">${r.outRefundNo}</td>
<td>${badge(r.reviewReason ?? NO_REASON, "warn")}</td>
<td>${r.status}</td>
<td class="mono">${r.outTradeNo}</td>
<td class="mono">${r.order ? html`${r.order.mchid}${subMerchant(r.order.subMchid)}` : "—"}</td>
<td class="num">${formatFen(r.amountRefund, r.order?.currency)}</td>
<td class="num">${formatFen(r.amountTotal, r.order?.currency)}</td>
<td class="num">${r.order ? `${formatFen(r.order.refundedTotal, r.order.currency)} of ${formatFen(r.order.amountTotal, r.order.currency)}` : "—"}</td>
<td class="mono">${r.refundId ?? "—"}</td>
<td class="mono">${r.transactionId ?? "—"}</td>
<td><a href="${href("/notifications", { q: r.outRefundNo, ...ownerFilter(r.order?.mchid, r.order?.subMchid) })}">notifications</a></td>
</tr>`,
      )}</tbody></table>
${refunds.length === REVIEW_LIMIT ? html`<p class="muted">Showing the ${REVIEW_LIMIT} most recent.</p>` : ""}`
}
<h2>Notifications in review, last ${NOTIFICATION_REVIEW_DAYS} days</h2>
<p class="muted">Outcomes that put no order or refund in review: another merchant's payment, a transaction or refund id already on another order or refund, a refund that does not match its order, a refund WeChat reports abnormal or closed.</p>
${
  notifications.length === 0
    ? html`<div class="card muted">No such notification.</div>`
    : html`<table><thead><tr><th>Received</th><th>Code</th><th>Event</th><th>Merchant</th><th>out_trade_no</th><th>transaction_id</th><th>out_refund_no</th><th></th></tr></thead>
<tbody>${notifications.map(
        (n) => html`<tr>
<td class="mono">${formatTime(n.receivedAt)}</td>
<td>${badge(n.errorCode ?? "(none)", "warn")}</td>
<td>${n.eventType}</td>
<td class="mono">${n.mchid ?? "—"}${subMerchant(n.subMchid)}</td>
<td class="mono">${n.outTradeNo ?? "—"}</td>
<td class="mono">${n.transactionId ?? "—"}</td>
<td class="mono">${n.outRefundNo ?? "—"}</td>
<td><a href="${href(`/notifications/${encodeURIComponent(n.id)}`)}">details</a></td>
</tr>`,
      )}</tbody></table>
${notifications.length === REVIEW_LIMIT ? html`<p class="muted">Showing the ${REVIEW_LIMIT} most recent.</p>` : ""}`
}`,
    });
  });
}
