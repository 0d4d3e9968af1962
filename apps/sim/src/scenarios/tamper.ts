import { v3Payment } from "../notifications.ts";
import { flipChar, newPayment, type Scenario, step } from "./common.ts";

/** One byte changed after signing: in the body (outside and inside the ciphertext) and in signed headers. */
export const tamperScenario: Scenario = {
  name: "tamper",
  summary: "one byte changed after signing: notification id, ciphertext, nonce header, timestamp header",
  expectation:
    "Reject every altered delivery (4XX/5XX): the signature covers timestamp, nonce and the raw body byte for " +
    "byte. The id change leaves the ciphertext intact, so only a receiver that really verifies the signature " +
    "over the raw bytes catches it. Accept the unaltered notification.",
  async run(ctx) {
    const notification = v3Payment(ctx.keys, newPayment(ctx));
    const original = notification.sign();
    const text = original.body.toString("utf8");
    const idAt = text.indexOf('"id":"') + '"id":"'.length;
    const idEnd = text.indexOf('"', idAt);
    const cipherAt = text.indexOf('"ciphertext":"') + '"ciphertext":"'.length;
    const tamperedId = Buffer.from(flipChar(text, idEnd - 1), "utf8");
    const tamperedCipher = Buffer.from(flipChar(text, cipherAt + 10), "utf8");
    const nonce = original.headers["Wechatpay-Nonce"] ?? "";
    const timestamp = original.headers["Wechatpay-Timestamp"] ?? "0";
    return [
      await step(ctx, "one character of the envelope id changed", "reject", "body no longer matches the signature", {
        headers: original.headers,
        body: tamperedId,
      }),
      await step(
        ctx,
        "one character of resource.ciphertext changed",
        "reject",
        "body no longer matches the signature",
        {
          headers: original.headers,
          body: tamperedCipher,
        },
      ),
      await step(ctx, "one character of Wechatpay-Nonce changed", "reject", "the nonce is part of the signed message", {
        headers: { ...original.headers, "Wechatpay-Nonce": flipChar(nonce, 0) },
        body: original.body,
      }),
      await step(
        ctx,
        "Wechatpay-Timestamp one second earlier",
        "reject",
        "the timestamp is part of the signed message",
        {
          headers: { ...original.headers, "Wechatpay-Timestamp": String(Number(timestamp) - 1) },
          body: original.body,
        },
      ),
      await step(ctx, "the unaltered notification (re-signed)", "accept", "genuine", notification.sign(new Date())),
    ];
  },
};
