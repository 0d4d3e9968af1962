import type { FastifyReply, FastifyRequest } from "fastify";
import type { SessionUser } from "../auth/session.ts";
import { html } from "../views/html.ts";
import { pageOfTheForm } from "./next.ts";
import { sendError, sendRefusalPage, wantsHtml } from "./page.ts";

const MESSAGE = "operator role required";

/**
 * The guard's refusal (`FORBIDDEN`, 403; auth/guard.ts) of a mutation by a viewer. A browser's form post (Accept names
 * text/html: a replay form a viewer reached, a page an operator's role was taken from since it loaded) gets a page,
 * as every other refusal a browser meets, saying nothing was done and leading back to the page the form was on; bull-board's
 * client and scripts the JSON refusal. Status and code are the same either way.
 */
export function sendForbidden(request: FastifyRequest, reply: FastifyReply, user: SessionUser): FastifyReply {
  if (!wantsHtml(request)) return sendError(request, reply, 403, "FORBIDDEN", MESSAGE);
  const back = pageOfTheForm(request);
  return sendRefusalPage(
    reply,
    403,
    "FORBIDDEN",
    html`
<p><strong>Operator role required:</strong> you are logged in as <strong>${user.name}</strong>,
a ${user.role}, who can look but not act. The action was not carried out.</p>
<p><a href="${back}">Back to the page</a>. An operator can do it, or give you the operator role
(<code>DASHBOARD_USERS</code>).</p>
`,
  );
}
