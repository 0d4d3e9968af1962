import type { FastifyReply } from "fastify";

/**
 * How long a notification may take to be answered, ms. WeChat gives up after 5 s; 4.5 s leaves room for the
 * network. Every wait of a request (a merchant-table lookup, a certificate download, the enqueue) comes out of it.
 * INGRESS_ENQUEUE_TIMEOUT_MS is at most 4.4 s, so a request that spent under 100 ms before its enqueue (below)
 * keeps within it too.
 */
export const ANSWER_BUDGET_MS = 4_500;

/**
 * What is left of the budget, ms, counted from when Fastify received the request. Spending under 100 ms before
 * the enqueue (every request without a lookup or a download) leaves the enqueue its configured bound.
 */
export function budgetLeftMs(reply: FastifyReply): number {
  const spent = reply.elapsedTime;
  return spent < 100 ? Number.POSITIVE_INFINITY : ANSWER_BUDGET_MS - spent;
}
