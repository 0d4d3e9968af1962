import { randomBytes } from "node:crypto";
import { signV3Headers } from "@wpn/wechatpay";
import { type Signer, signerKey, v3Payment } from "../notifications.ts";
import { newPayment, type Scenario, type StepResult, step } from "./common.ts";

/** Which key signs each of the mixed deliveries: both serials, in no regular order. */
const MIX: readonly Signer[] = [
  "public-key",
  "certificate",
  "certificate",
  "public-key",
  "certificate",
  "public-key",
  "public-key",
  "certificate",
];

/**
 * WeChat's 7-day switch from platform certificates to the public key: notifications are signed with either
 * key at random (protocol notes §1.4). Needs the receiver configured with BOTH the public key and the
 * platform certificate of the keys folder (WECHATPAY_PUBLIC_KEY_ID/PATH and WECHATPAY_PLATFORM_CERT_PATHS).
 */
export const switchScenario: Scenario = {
  name: "switch",
  summary: "certificate → public-key switch: deliveries signed with both serials, mixed; mismatched key/serial",
  expectation:
    "Accept every delivery signed with either key under its own serial (the receiver needs both the public key " +
    "and the platform certificate from `keys`). Reject a signature whose key does not belong to the serial it " +
    "names, and an unknown serial.",
  async run(ctx) {
    const steps: StepResult[] = [];
    for (const [i, signer] of MIX.entries()) {
      const n = v3Payment(ctx.keys, newPayment(ctx), { signer });
      const serial = signerKey(ctx.keys, signer).serial;
      steps.push(
        await step(
          ctx,
          `delivery ${i + 1}: signed with the ${signer}, serial ${serial}`,
          "accept",
          "genuine",
          n.sign(),
        ),
      );
    }
    const { body } = v3Payment(ctx.keys, newPayment(ctx)).sign();
    const cert = signerKey(ctx.keys, "certificate");
    const pub = signerKey(ctx.keys, "public-key");
    steps.push(
      await step(
        ctx,
        "certificate key, but serial = public key id",
        "reject",
        "the key of the named serial does not verify it",
        {
          headers: signV3Headers(body, { privateKey: cert.privateKey, serial: pub.serial }),
          body,
        },
      ),
    );
    steps.push(
      await step(
        ctx,
        "public key's key, but serial = certificate serial",
        "reject",
        "the key of the named serial does not verify it",
        {
          headers: signV3Headers(body, { privateKey: pub.privateKey, serial: cert.serial }),
          body,
        },
      ),
    );
    const unknown = randomBytes(20).toString("hex").toUpperCase().replace(/^0/, "1");
    steps.push(
      await step(ctx, `unknown serial ${unknown}`, "reject", "no configured key has this serial", {
        headers: signV3Headers(body, { privateKey: cert.privateKey, serial: unknown }),
        body,
      }),
    );
    return steps;
  },
};
