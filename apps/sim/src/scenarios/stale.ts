import { v3Payment } from "../notifications.ts";
import { newPayment, type Scenario, step } from "./common.ts";

/** How far outside WeChat's 5-minute window the stale deliveries are. */
export const STALE_SECONDS = 360;

/** Timestamps outside the 5-minute window, both directions, then a fresh redelivery. */
export const staleScenario: Scenario = {
  name: "stale",
  summary: `validly signed notifications with a timestamp ${STALE_SECONDS} s in the past and in the future`,
  expectation:
    "Reject both (4XX/5XX): WeChat's docs require |now − Wechatpay-Timestamp| ≤ 5 minutes, so a captured " +
    "notification cannot be replayed later. Accept the same notification re-signed now.",
  async run(ctx) {
    const now = Date.now();
    const past = v3Payment(ctx.keys, newPayment(ctx), { now: new Date(now - STALE_SECONDS * 1000) });
    const future = v3Payment(ctx.keys, newPayment(ctx), { now: new Date(now + STALE_SECONDS * 1000) });
    return [
      await step(
        ctx,
        `Wechatpay-Timestamp ${STALE_SECONDS} s ago`,
        "reject",
        "outside the 5-minute window",
        past.sign(new Date(now - STALE_SECONDS * 1000)),
      ),
      await step(
        ctx,
        `Wechatpay-Timestamp ${STALE_SECONDS} s ahead`,
        "reject",
        "outside the 5-minute window",
        future.sign(new Date(now + STALE_SECONDS * 1000)),
      ),
      await step(ctx, "the first notification re-signed now", "accept", "a genuine redelivery", past.sign(new Date())),
    ];
  },
};
