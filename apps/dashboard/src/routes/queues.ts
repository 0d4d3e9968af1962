import { createBullBoard } from "@bull-board/api";
import { FastifyAdapter } from "@bull-board/fastify";
import { isUsableJobId, QueueName } from "@wpn/queue";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { setXsrfCookie } from "../auth/csrf.ts";
import { actionName, SAFE_METHODS } from "../auth/guard.ts";
import type { DashboardContext } from "../context.ts";
import { hasControlCharacter } from "../input.ts";
import { boardListQueryProblem } from "./board-query.ts";
import { FullRetryAdapter } from "./retry-adapter.ts";

export const BULL_BOARD_PATH = "/queues";
export const BULL_BOARD_READONLY_PATH = "/queues-readonly";

/**
 * bull-board for every pipeline queue, mounted twice because its read-only mode is per queue adapter, not
 * per request:
 * - `/queues`: full board (retry, promote, clean completed, pause…). Its pages redirect viewers to the read-only board,
 *   and the root guard answers 403 to any mutating method from a non-operator, API calls included.
 * - `/queues-readonly`: the same queues with readOnlyMode, linked from the navigation for viewers, so they
 *   get a UI without buttons that would fail. bull-board itself refuses mutations there (405).
 * Both sit behind the root auth hook and CSRF check like every other route, and bull-board's mutating API is cut
 * down to the actions that cannot forge, lose or alter a notification (`ALLOWED_ACTIONS`, `refusedAction`).
 */
export async function registerBullBoards(app: FastifyInstance, ctx: DashboardContext): Promise<void> {
  await mountBoard(app, ctx, BULL_BOARD_PATH, false);
  await mountBoard(app, ctx, BULL_BOARD_READONLY_PATH, true);
}

async function mountBoard(app: FastifyInstance, ctx: DashboardContext, basePath: string, readOnlyMode: boolean) {
  const adapter = new FastifyAdapter();
  adapter.setBasePath(basePath);
  createBullBoard({
    queues: Object.values(ctx.queues).map((queue) => {
      // Its retry gives a job its attempts again (retry-adapter.ts).
      const adapter = new FullRetryAdapter(queue, ctx.redis, app.log, { readOnlyMode });
      adapter.setFormatter("data", hidePayerIds);
      return adapter;
    }),
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
  // bull-board answers errors in its scope itself (Fastify logs only in its default handler): a failed audit write
  // or Redis call would go unlogged, and its message — a Prisma error quotes source lines — to the client.
  adapter.setErrorHandler((error: Error & { statusCode?: number; code?: string }) => {
    const status = error.statusCode ?? 500;
    // A refusal (the CSRF check's 403, a body too large…) keeps its status and message. bull-board's type lists
    // only the statuses its own handlers use; Fastify sends any.
    if (status < 500)
      return { status: status as 400, body: { error: error.code ?? "REFUSED", message: error.message } };
    app.log.error({ err: error, board: basePath }, "bull-board request failed");
    return { status: 500 as const, body: { error: "INTERNAL", message: "internal error (logged)" } };
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
        setXsrfCookie(reply, ctx);
      });
      // bull-board's page links Google Fonts; the console must not reach the Internet (CSP would block it
      // anyway, but the browser still tries). Its CSS falls back to system fonts.
      scope.addHook("onSend", async (_request, reply, payload) => {
        const type = String(reply.getHeader("content-type") ?? "");
        if (typeof payload !== "string" || !type.startsWith("text/html")) return payload;
        return payload.replace(/<link[^>]+fonts\.(?:googleapis|gstatic)\.com[^>]*>/g, "");
      });
      // A parameter with a control character names no queue, job or status (no id has one), and an allowed action's
      // audit row would carry it: PostgreSQL refuses NUL in text (22021), which answered 500 and logged an error.
      // Refused like the dashboard's own pages refuse one, before Redis and the audit row (root preHandler).
      scope.addHook("onRequest", async (request, reply) => {
        const params = Object.values(request.params as Record<string, string>);
        if (!params.some(hasControlCharacter)) return;
        return reply
          .code(400)
          .type("application/json")
          .send({ error: "BAD_REQUEST", message: "a parameter contains a control character" });
      });
      // bull-board's job list takes its query unchecked (board-query.ts): refused before it reaches Redis.
      scope.addHook("onRequest", async (request, reply) => {
        if (request.routeOptions.url !== `${basePath}/api/queues` || !SAFE_METHODS.has(request.method)) return;
        const problem = boardListQueryProblem(request.query as Record<string, unknown>);
        if (problem === undefined) return;
        return reply.code(400).type("application/json").send({ error: "BAD_REQUEST", message: problem });
      });
      // A job id that cannot be one (`isUsableJobId`: `events`, `meta`, … are the queue's own keys) names no job:
      // bull-board read the key as one — a stream (WRONGTYPE, a 500) or the meta hash (a phantom job).
      scope.addHook("onRequest", async (request, reply) => {
        const { jobId } = request.params as { jobId?: string };
        if (jobId === undefined || isUsableJobId(jobId)) return;
        return reply.code(404).type("application/json").send({ error: "NOT_FOUND", message: "no such job" });
      });
      // After the root guard (session, role), before the CSRF check and the audit row (root preHandlers).
      scope.addHook("onRequest", async (request, reply) => {
        if (SAFE_METHODS.has(request.method)) return;
        const refusal = refusedAction(request);
        if (refusal === undefined) return;
        ctx.metrics.actions.inc({ action: actionName(request), result: "denied" });
        request.log.warn(
          { user: request.auth?.user.name, route: request.routeOptions.url, refusal },
          "bull-board action refused",
        );
        return refuse(reply, refusal);
      });
      // bull-board's client reads its API on a timer while a board's tab is open, looked at or not (and to show what is
      // clicked in it: the requests do not tell the two apart), so those reads are not use of the session — an open board
      // nobody looks at ends at the idle limit (auth/guard.ts, `Activity`). Its pages and its actions (PUT) are use.
      scope.addHook("onRoute", (route) => {
        const reads = [route.method].flat().every((method) => method === "GET" || method === "HEAD");
        if (reads && route.url.startsWith(`${basePath}/api/`))
          route.config = { ...route.config, activity: "background" };
      });
      await scope.register(adapter.registerPlugin());
    },
    { prefix: basePath },
  );
}

/**
 * bull-board's mutating routes the dashboard lets an operator use: pause and resume, retry, promote a delayed job,
 * and clean the completed jobs of a queue but notify.dead (BullMQ's clean works on the set in one atomic step). The others are
 * refused, whoever asks: `add` and `update-data` would put a job no one verified on a queue (a job on
 * notify.publish announces a payment that never happened; what reaches notify.parse and notify.apply the workers
 * authenticate again — an unsigned APIv2 payment marked an order paid until they did — but only as a second line);
 * `empty`,
 * `obliterate` and cleaning waiting, delayed or active jobs would drop notifications WeChat has been told are kept
 * (its resends are answered from the receipt, so they would never be applied). Removing one job is refused too: its
 * state cannot be checked in the same step as bull-board's removal, and a replay in between (which puts a job back
 * under the same id and removes its dead letter) would have the replayed job removed, with no letter left. Delay,
 * priority, concurrency, rate limits, job schedulers and history purges are not this pipeline's controls. A dead
 * letter leaves notify.dead only by the dead-letter page's replay (it is a waiting job there).
 */
const ALLOWED_ACTIONS = new Set([
  "PUT /api/queues/pause",
  "PUT /api/queues/resume",
  "PUT /api/queues/:queueName/pause",
  "PUT /api/queues/:queueName/resume",
  "PUT /api/queues/:queueName/retry/:queueStatus",
  "PUT /api/queues/:queueName/:jobId/retry",
  "PUT /api/queues/:queueName/promote",
  "PUT /api/queues/:queueName/:jobId/promote",
  "PUT /api/queues/:queueName/clean/:queueStatus",
]);

/**
 * Job sets whose cleaning loses nothing: a completed parse or apply job's effect is in PostgreSQL, a completed publish
 * job's event was delivered (not on notify.dead: `UNCLEANABLE_QUEUES`). Not `failed`: a failed job is not
 * always dead-lettered — a parse or apply job that stalled too often while Redis refused its letter stays there as
 * the only copy of a notification WeChat was told is kept (worker README, DEAD_LETTER_FAILED), and a failed
 * notify.publish job (the merchant's consumer's) never has one. Nothing tells the two apart within BullMQ's atomic
 * clean, so failed jobs leave by retry, or by `removeOnFail` (7 days on notify.parse and notify.apply; never on
 * notify.publish, whose failed job is its event's only copy: packages/queue/src/options.ts).
 */
const REMOVABLE_STATES = new Set(["completed"]);

/**
 * Queues whose jobs no set may be cleaned from: a letter on notify.dead is completed only by a consumer that has no
 * business there (nothing of ours takes them), so it was never replayed — it holds the only copy of a job that could
 * not be applied, and the dead-letter page counts it and sends the operator to bull-board to retry it back into
 * waiting. Dead letters leave notify.dead by replay alone.
 */
const UNCLEANABLE_QUEUES = new Set<string>([QueueName.Dead]);

/** Why the mutating bull-board request is refused, or undefined when it may go on. */
function refusedAction(request: FastifyRequest): string | undefined {
  const url = request.routeOptions.url ?? "";
  const route = url.replace(/^\/queues(?:-readonly)?/, "");
  if (!ALLOWED_ACTIONS.has(`${request.method} ${route}`))
    return `${actionName(request)} is not allowed on this dashboard`;
  const params = request.params as { queueName?: string; jobId?: string; queueStatus?: string };
  if (route !== "/api/queues/:queueName/clean/:queueStatus") return undefined;
  if (!REMOVABLE_STATES.has(params.queueStatus ?? "")) {
    return params.queueStatus === "failed"
      ? "failed jobs cannot be cleaned: one may have no dead letter and be the only copy of its notification or event; retry it (BullMQ removes a failed parse or apply job after 7 days, never a failed publish job)"
      : "only completed jobs can be cleaned";
  }
  if (UNCLEANABLE_QUEUES.has(params.queueName ?? "")) {
    return `${params.queueName} cannot be cleaned: a completed dead letter was never replayed; retry it back into waiting and replay it on the dead-letter page`;
  }
  return undefined;
}

function refuse(reply: FastifyReply, message: string): FastifyReply {
  return reply.code(403).type("application/json").send({ error: "ACTION_NOT_ALLOWED", message });
}

/**
 * The payer ids an APIv2 payment's clear XML carries (`openid`, partner mode's `sub_openid`), as elements: every form
 * the workers' parser reads as that field (parseV2Xml of @wpn/wechatpay), not only WeChat's usual `<openid>…</openid>`
 * — whitespace before a tag's `>`, attributes (ignored by the parser, their values may hold `>`), a value in CDATA
 * (which may hold `</openid>` itself) or beside comments. The end tag is optional so that a body the parser refuses
 * (no end tag) still shows no id: everything up to the next markup is hidden. One path per character (each
 * alternative starts differently), so a long body costs linear time.
 */
const PAYER_ID_ELEMENT =
  /<((?:sub_|sp_)?openid)(?:\s(?:[^>"']|"[^"]*"|'[^']*')*)?>(?:<!\[CDATA\[[\s\S]*?\]\]>|<!--[\s\S]*?-->|[^<])*(<\/\1\s*>)?/g;

/**
 * bull-board's view of a job's data with the payer ids of APIv2 payment bodies replaced: job data is shown to every
 * logged-in user, and the dashboard shows no payer data (APIv3 bodies and APIv2 refunds are encrypted anyway).
 * Walks nested values, so a dead letter's copy of the job is covered too. Only the view: Redis keeps the body.
 */
export function hidePayerIds(data: unknown): unknown {
  if (typeof data === "string")
    return data.includes("openid")
      ? data.replace(PAYER_ID_ELEMENT, (_element, name, end) => `<${name}>(hidden)${end ? `</${name}>` : ""}`)
      : data;
  if (Array.isArray(data)) return data.map(hidePayerIds);
  if (typeof data === "object" && data !== null) {
    return Object.fromEntries(Object.entries(data).map(([key, value]) => [key, hidePayerIds(value)]));
  }
  return data;
}
