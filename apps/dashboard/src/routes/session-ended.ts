import type { FastifyReply, FastifyRequest } from "fastify";
import { html } from "../views/html.ts";
import { pageOfTheForm } from "./next.ts";
import { sendRefusalPage } from "./page.ts";

/**
 * The guard's refusal (`UNAUTHENTICATED`, 401; auth/guard.ts) of a browser's form post without a live session: a page
 * left open while its session ended — logged out (in another tab: no session cookie left), expired, unused for longer
 * than the idle limit, ended by a password change or replaced by a newer login (a dead cookie). The guard runs before the CSRF check, so this, not the
 * stale-form page, is what such a form meets. Where the JSON refusal showed a browser raw JSON, the page says what
 * happened, that nothing was done, and leads back through the login to the page the form was on. Status and code are
 * those of the JSON refusal, which non-browser clients (bull-board's, scripts) still get.
 */
export function sendSessionEnded(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const back = pageOfTheForm(request);
  return sendRefusalPage(
    reply,
    401,
    "UNAUTHENTICATED",
    html`
<p><strong>Your session has ended:</strong> you logged out (perhaps in another tab or window), it expired or went
unused for too long, or it was replaced — by a newer login, or by a change of your password.
The action was not carried out.</p>
<p><a href="/login?next=${encodeURIComponent(back)}">Log in again</a> to return to the page and try again.</p>
`,
  );
}
