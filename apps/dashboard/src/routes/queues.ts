import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import type { FastifyInstance } from "fastify";
import { setXsrfCookie } from "../auth/csrf.ts";
import type { DashboardContext } from "../context.ts";

export const BULL_BOARD_PATH = "/queues";
export const BULL_BOARD_READONLY_PATH = "/queues-readonly";

/**
 * bull-board for every pipeline queue, mounted twice because its read-only mode is per queue adapter, not
 * per request:
 * - `/queues`: full board (retry, promote, clean, pause…). Its pages redirect viewers to the read-only board,
 *   and the root guard answers 403 to any mutating method from a non-operator, API calls included.
 * - `/queues-readonly`: the same queues with readOnlyMode, linked from the navigation for viewers, so they
 *   get a UI without buttons that would fail. bull-board itself refuses mutations there (405).
 * Both sit behind the root auth hook and CSRF check like every other route.
 */
export async function registerBullBoards(app: FastifyInstance, ctx: DashboardContext): Promise<void> {
  await mountBoard(app, ctx, BULL_BOARD_PATH, false);
  await mountBoard(app, ctx, BULL_BOARD_READONLY_PATH, true);
}

async function mountBoard(app: FastifyInstance, ctx: DashboardContext, basePath: string, readOnlyMode: boolean) {
  const adapter = new FastifyAdapter();
  adapter.setBasePath(basePath);
  createBullBoard({
    queues: Object.values(ctx.queues).map((queue) => new BullMQAdapter(queue, { readOnlyMode })),
    // @bull-board/fastify 9.10.1 bundles its own @bull-board/api 9.10.1, whose declarations TypeScript keeps
    // apart from the 9.10.2 used here (private members); at runtime the adapter only receives plain values.
    serverAdapter: adapter as unknown as Parameters<typeof createBullBoard>[0]["serverAdapter"],
    options: {
      uiConfig: {
        boardTitle: readOnlyMode ? "Queues (read-only)" : "Queues",
        miscLinks: [{ text: "Back to the dashboard", url: "/" }],
      },
    },
  });
  await app.register(
    async (scope) => {
      // The page load hands bull-board's client its CSRF token (see auth/csrf.ts); API polls and static
      // assets do not need a new one.
      scope.addHook("onRequest", async (request, reply) => {
        const path = request.url.slice(basePath.length);
        if (request.method !== "GET" || path.startsWith("/api/") || path.startsWith("/static/")) return;
        // A viewer following an operator's link lands on the read-only board instead of buttons that fail.
        if (!readOnlyMode && request.auth?.user.role !== "operator") {
          return reply.redirect(`${BULL_BOARD_READONLY_PATH}${path}`, 302);
        }
        setXsrfCookie(reply, ctx.config.DASHBOARD_COOKIE_SECURE);
      });
      // bull-board's page links Google Fonts; the console must not reach the Internet (CSP would block it
      // anyway, but the browser still tries). Its CSS falls back to system fonts.
      scope.addHook("onSend", async (_request, reply, payload) => {
        const type = String(reply.getHeader("content-type") ?? "");
        if (typeof payload !== "string" || !type.startsWith("text/html")) return payload;
        return payload.replace(/<link[^>]+fonts\.(?:googleapis|gstatic)\.com[^>]*>/g, "");
      });
      await scope.register(adapter.registerPlugin());
    },
    { prefix: basePath },
  );
}
