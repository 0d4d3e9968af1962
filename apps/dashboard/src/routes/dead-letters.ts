import type { ReplayStatus } from "@wpn/queue";
import type { FastifyInstance } from "fastify";
import type { DashboardContext } from "../context.ts";
import { type DeadLetterRow, listDeadLetters, REPLAY_BATCH_LIMIT, replayDeadLetters } from "../data/dead-letters.ts";
import { hasControlCharacter } from "../input.ts";
import { badge, formatTime, subMchidLink } from "../views/format.ts";
import { href, html, type SafeHtml } from "../views/html.ts";
import { sendError, sendPage } from "./page.ts";

const OUTCOMES = [
  "replayed",
  "resumed",
  "not-found",
  "invalid",
  "in-flight",
  "failed",
] as const satisfies readonly ReplayStatus[];

/** Ids from a form: one value or repeated fields; bounded in number and length. */
function formIds(value: unknown): string[] | undefined {
  const list = Array.isArray(value) ? value : value === undefined ? [] : [value];
  if (list.length > REPLAY_BATCH_LIMIT || list.some((v) => typeof v !== "string" || v.length === 0 || v.length > 256)) {
    return undefined;
  }
  return [...new Set(list as string[])];
}

/** The dead-letter list, and replay of one or selected letters (operators; the root guard enforces it). */
export function registerDeadLetterRoutes(app: FastifyInstance, ctx: DashboardContext): void {
  app.get("/dead-letters", async (request, reply) => {
    const { rows, total, moved } = await listDeadLetters(ctx, request.log);
    const movedCount = moved.active + moved.completed + moved.failed;
    const query = request.query as Record<string, unknown>;
    const isOperator = request.auth?.user.role === "operator";
    return sendPage(request, reply, {
      title: "Dead letters",
      active: "/dead-letters",
      body: html`${flash(query)}
<p class="muted">${total} letter(s) in <code>notify.dead</code>${total > rows.length ? `, the ${rows.length} newest shown` : ""}. A replay puts the original job back in the queue it failed in, under its original id; the stages are idempotent, so replaying an already-applied notification changes nothing.</p>
${movedCount > 0 ? html`<div class="flash warn">${movedCount} letter(s) moved out of waiting by hand (active: ${moved.active}, completed: ${moved.completed}, failed: ${moved.failed}) are not listed here and cannot be replayed from here: see <code>notify.dead</code> in bull-board.</div>` : ""}
${rows.length === 0 ? html`<div class="card muted">No dead letters.</div>` : table(rows, total, isOperator, reply.generateCsrf())}`,
    });
  });

  app.post("/dead-letters/replay", async (request, reply) => {
    const body = (request.body ?? {}) as { ids?: unknown; id?: unknown };
    // A row's own button sends `id` (and the checked boxes along with it, which are then ignored).
    const ids = body.id !== undefined ? formIds(body.id) : formIds(body.ids);
    if (!ids || ids.length === 0) {
      return sendError(
        request,
        reply,
        400,
        "NOTHING_SELECTED",
        `Select between 1 and ${REPLAY_BATCH_LIMIT} dead letters.`,
      );
    }
    // Refused as a whole, before any letter is replayed: no letter id has one (the page lists the ids it offers), and
    // its audit row would fail in PostgreSQL (NUL) after the letters before it were replayed and before the others.
    if (ids.some(hasControlCharacter)) {
      return sendError(request, reply, 400, "BAD_REQUEST", "A selected dead-letter id contains a control character.");
    }
    const actor = request.auth?.user;
    if (!actor) throw new Error("guarded route without a session");
    const outcomes = await replayDeadLetters(ctx, ids, actor);
    request.log.info(
      { user: actor.name, requested: ids.length, replayed: outcomes.filter((o) => o.status === "replayed").length },
      "dead letters replayed",
    );
    const counts = Object.fromEntries(OUTCOMES.map((s) => [s, outcomes.filter((o) => o.status === s).length]));
    return reply.redirect(href("/dead-letters", counts), 303);
  });
}

function flash(query: Record<string, unknown>): SafeHtml {
  const counts = OUTCOMES.map((s) => [s, Number(query[s] ?? 0)] as const).filter(
    ([, n]) => Number.isInteger(n) && n > 0,
  );
  if (counts.length === 0) return html``;
  const failed = counts.some(([s]) => s !== "replayed" && s !== "resumed");
  return html`<div class="flash ${failed ? "warn" : "ok"}" role="status">${counts.map(([s, n]) => `${s}: ${n}`).join(" · ")}</div>`;
}

/**
 * The order a letter names, as the notification's row does (out_trade_no is unique only per merchant and
 * sub-merchant): its sub-merchant (linked to its notifications, as everywhere) and out_refund_no under it when it has
 * them — a letter of an earlier release has only the out_trade_no.
 */
function orderCell(letter: NonNullable<DeadLetterRow["letter"]>): SafeHtml {
  return html`${letter.outTradeNo ?? "—"}${letter.subMchid ? html`<br><span class="muted">sub-merchant ${subMchidLink(letter.subMchid)}</span>` : ""}${letter.outRefundNo ? html`<br><span class="muted">out_refund_no ${letter.outRefundNo}</span>` : ""}`;
}

function table(rows: DeadLetterRow[], total: number, isOperator: boolean, csrfToken: string): SafeHtml {
  return html`<form method="post" action="/dead-letters/replay">
<input type="hidden" name="_csrf" value="${csrfToken}">
${isOperator ? html`<p><button type="submit">Replay selected</button></p>` : html`<p class="muted">Replaying needs the operator role.</p>`}
<table><thead><tr><th></th><th>Dead-lettered</th><th>Letter id</th><th>Stage</th><th>Notification</th><th>out_trade_no</th><th>Code</th><th>Reason</th><th class="num">Attempts</th><th></th></tr></thead>
<tbody>${rows.map(
    (r) => html`<tr>
<td>${isOperator ? html`<input type="checkbox" name="ids" value="${r.id}" aria-label="select ${r.id}">` : ""}</td>
<td class="mono">${formatTime(r.timestamp)}</td>
<td class="mono">${r.id}</td>
${
  r.letter
    ? html`<td class="mono">${r.letter.queue}</td>
<td class="mono">${r.letter.notificationId ? html`<a href="${href(`/notifications/${encodeURIComponent(r.letter.notificationId)}`)}">${r.letter.notificationId}</a>` : "—"}</td>
<td class="mono">${orderCell(r.letter)}</td>
<td>${badge(r.letter.code, "bad")}</td>
<td>${r.letter.message}</td>
<td class="num">${r.letter.attemptsMade}</td>`
    : html`<td colspan="6">${badge("unreadable letter", "bad")} ${r.invalid}</td>`
}
<td>${isOperator ? html`<button type="submit" class="secondary" formaction="/dead-letters/replay" name="id" value="${r.id}">Replay</button>` : ""}</td>
</tr>`,
  )}</tbody></table>
</form>
${total > rows.length ? html`<p class="muted">Only the newest ${rows.length} are listed; use bull-board for the rest.</p>` : ""}`;
}
