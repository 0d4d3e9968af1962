import { signV3Headers } from "@wpn/wechatpay";
import { signerKey, v3Payment } from "../notifications.ts";
import { newPayment, type Scenario, step } from "./common.ts";

/** WeChat's deliberate bad-signature probe (protocol notes §1.6), then the real delivery. */
export const probeScenario: Scenario = {
  name: "probe",
  summary: "a WECHATPAY/SIGNTEST/ signature probe, then the same notification properly signed",
  expectation:
    "Reject the probe with 4XX/5XX (acknowledging it means signatures are not checked), then accept the same " +
    "notification when WeChat re-sends it with a valid signature.",
  async run(ctx) {
    const notification = v3Payment(ctx.keys, newPayment(ctx));
    const { body } = notification.sign();
    const probe = { headers: signV3Headers(body, { ...signerKey(ctx.keys, "public-key"), probe: true }), body };
    return [
      await step(
        ctx,
        "probe: Wechatpay-Signature WECHATPAY/SIGNTEST/…",
        "reject",
        "a probe signature never verifies",
        probe,
      ),
      await step(
        ctx,
        "the same notification re-sent with a valid signature",
        "accept",
        "WeChat re-sends after a rejected probe; this one is genuine",
        notification.sign(new Date()),
      ),
    ];
  },
};
