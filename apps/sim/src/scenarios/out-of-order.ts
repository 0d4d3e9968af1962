import { v3Payment, v3Refund } from "../notifications.ts";
import { newPayment, newRefundOf, type Scenario, step } from "./common.ts";

/** The refund notification overtakes the payment notification (both are asynchronous on WeChat's side). */
export const outOfOrderScenario: Scenario = {
  name: "out-of-order",
  summary: "a refund notification before the payment notification of the same order",
  expectation:
    "The early refund may be acknowledged (kept until the payment arrives) or refused with 4XX/5XX (WeChat " +
    "redelivers it); both are fine. The payment must be accepted, and the refund's redelivery after it must be " +
    "accepted, so the order ends refunded.",
  async run(ctx) {
    const payment = newPayment(ctx);
    const pay = v3Payment(ctx.keys, payment);
    const refund = v3Refund(ctx.keys, newRefundOf(ctx, payment));
    return [
      await step(
        ctx,
        `REFUND.SUCCESS for ${payment.outTradeNo} before any payment`,
        "either",
        "keep it for later (2XX) or ask for a redelivery (4XX/5XX)",
        refund.sign(),
      ),
      await step(ctx, `TRANSACTION.SUCCESS for ${payment.outTradeNo}`, "accept", "a genuine payment", pay.sign()),
      await step(
        ctx,
        `the refund redelivered (same id ${refund.id}) after the payment`,
        "accept",
        "the order is paid now; the refund applies",
        refund.sign(new Date()),
      ),
    ];
  },
};
