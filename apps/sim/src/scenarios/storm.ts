import { v3Payment } from "../notifications.ts";
import { burst, newPayment, type Scenario } from "./common.ts";

export const DEFAULT_STORM_SIZE = 20;

/** A burst of concurrent resends of one notification (same id, each re-signed). */
export const stormScenario: Scenario = {
  name: "storm",
  summary: `a burst of ${DEFAULT_STORM_SIZE} (--storm-size) concurrent resends of one notification`,
  expectation:
    "Accept every copy (200/204) within 5 s, although they arrive at the same moment; the payment must be " +
    "applied once (check the order: one set of stock movements).",
  async run(ctx) {
    const size = ctx.stormSize ?? DEFAULT_STORM_SIZE;
    const notification = v3Payment(ctx.keys, newPayment(ctx));
    const requests = Array.from({ length: size }, (_, i) =>
      i === 0 ? notification.sign() : notification.sign(new Date()),
    );
    return burst(
      ctx,
      requests.map((_, i) => `copy ${i + 1} of ${size} of notification ${notification.id}`),
      "accept",
      "every copy is genuine; duplicates are acknowledged, not rejected",
      requests,
    );
  },
};
