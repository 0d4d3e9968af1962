import type { FastifyReply, FastifyRequest } from "fastify";
import { html, type SafeHtml } from "../views/html.ts";
import { bareLayout, layout, type PageContext } from "../views/layout.ts";

/** Who is looking and a fresh CSRF token; only called on routes behind the guard, so `auth` is set. */
export function pageContext(request: FastifyRequest, reply: FastifyReply): PageContext {
  if (!request.auth) throw new Error("pageContext on a route without a session");
  return { user: request.auth.user, csrfToken: reply.generateCsrf() };
}

export function sendHtml(reply: FastifyReply, page: SafeHtml, status = 200): FastifyReply {
  return reply.code(status).type("text/html; charset=utf-8").send(page.toString());
}

/** A full page with navigation. */
export function sendPage(
  request: FastifyRequest,
  reply: FastifyReply,
  page: { title: string; active: string; body: SafeHtml; status?: number },
): FastifyReply {
  return sendHtml(reply, layout(page.title, page.active, pageContext(request, reply), page.body), page.status);
}

/** Whether the client reads HTML (a browser's page load or form post), not JSON (bull-board's client, scripts). */
export function wantsHtml(request: FastifyRequest): boolean {
  return (request.headers.accept ?? "").includes("text/html");
}

/** A refusal as a browser sees it: a small page headed by its status and code, then `body`. */
export function sendRefusalPage(reply: FastifyReply, status: number, code: string, body: SafeHtml): FastifyReply {
  return sendHtml(
    reply,
    bareLayout(`${status}`, html`<div class="card"><h1>${status} ${code}</h1>${body}</div>`),
    status,
  );
}

/** An error as a small page for browsers, JSON for everything else. */
export function sendError(request: FastifyRequest, reply: FastifyReply, status: number, code: string, message: string) {
  if (wantsHtml(request)) {
    return sendRefusalPage(reply, status, code, html`<p>${message}</p><p><a href="/">Back to the dashboard</a></p>`);
  }
  return reply.code(status).type("application/json").send({ error: code, message });
}
