import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { IngressError } from "../errors.ts";
import { refuseContentEncoding } from "./content-encoding.ts";
import type { MerchantParams, NotifyContext } from "./context.ts";
import { handleNotifyError } from "./failure.ts";

export type NotifyHandler = (
  ctx: NotifyContext,
  request: FastifyRequest<{ Params: MerchantParams }>,
  reply: FastifyReply,
) => Promise<FastifyReply>;

/**
 * Registers `POST /notify/<api>` (default merchant) and `/notify/<api>/:mchid` in the caller's encapsulated
 * Fastify context. The body is kept as the raw Buffer for `contentTypes` (signatures cover the exact bytes:
 * never parse-and-reserialise) and every other content type, or a body in a content coding (gzip, …), gets 415;
 * failures are answered in the API's own format by `handleNotifyError` — SHUTTING_DOWN too, for requests that still
 * arrive on kept-alive sockets once the app is closing (Fastify then also sets `Connection: close`).
 */
export function registerNotifyRoutes(
  app: FastifyInstance,
  ctx: NotifyContext,
  api: "v2" | "v3",
  contentTypes: string | string[],
  handle: NotifyHandler,
): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(contentTypes, { parseAs: "buffer" }, (_request, body, done) => done(null, body));
  app.setErrorHandler((error, request, reply) => handleNotifyError(error, request, reply, api, ctx.metrics));
  // Before the body is read: a compressed body is refused without reading it. A callback hook, not an async one: on
  // the hot path, a request with no Content-Encoding (all of WeChat's) costs one property read, no promise.
  app.addHook("onRequest", (request, _reply, done) => {
    const coding = request.headers["content-encoding"];
    if (coding === undefined) return done();
    try {
      refuseContentEncoding(coding);
      done();
    } catch (error) {
      done(error as IngressError);
    }
  });

  const route = { bodyLimit: ctx.settings.bodyLimitBytes, config: { api } };
  const handler = (request: FastifyRequest<{ Params: MerchantParams }>, reply: FastifyReply) =>
    ctx.isClosing() ? Promise.reject(new IngressError("SHUTTING_DOWN")) : handle(ctx, request, reply);
  app.post(`/notify/${api}`, route, handler);
  app.post(`/notify/${api}/:mchid`, route, handler);
}
