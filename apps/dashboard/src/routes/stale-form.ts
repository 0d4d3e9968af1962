import type { FastifyReply, FastifyRequest } from "fastify";
import { html } from "../views/html.ts";
import { pageOfTheForm } from "./next.ts";
import { sendError, sendRefusalPage, wantsHtml } from "./page.ts";

/**
 * The refusal of a mutation whose CSRF token is not this browser's session's (`FST_CSRF_INVALID_TOKEN`) or that
 * carries no CSRF secret (`FST_CSRF_MISSING_SECRET`; auth/csrf.ts). In a browser that is almost always a form of a
 * page loaded before the last login or logout — another tab, a restored window: tokens are bound to the session, and
 * login and logout replace the secret. A browser (Accept: text/html) gets a page that says so and leads back, where
 * a bare "Invalid csrf token" told nothing; anything else (bull-board's client, scripts) the JSON refusal. Status and
 * code are the same either way, and nothing was done.
 */
export function sendStaleForm(
  request: FastifyRequest,
  reply: FastifyReply,
  code: "FST_CSRF_INVALID_TOKEN" | "FST_CSRF_MISSING_SECRET",
  message: string,
): FastifyReply {
  if (!wantsHtml(request)) return sendError(request, reply, 403, code, message);
  const back = pageOfTheForm(request);
  const who = request.auth
    ? html`You are logged in as <strong>${request.auth.user.name}</strong> now.`
    : html`You are not logged in now.`;
  return sendRefusalPage(
    reply,
    403,
    code,
    html`
<p><strong>This page is out of date:</strong> the session it was loaded in has changed since — you logged in or out,
perhaps in another tab or window. ${who} The form was refused and nothing was done.</p>
<p><a href="${back}">Reload the page</a> and try again, or <a href="/login?next=${encodeURIComponent(back)}">log in</a>.</p>
`,
  );
}
