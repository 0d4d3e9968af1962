import { setTimeout as delay } from "node:timers/promises";
import { v3Payment } from "../notifications.ts";
import { newPayment, type Scenario, type StepResult, step } from "./common.ts";

/** Pause between the delivery and its replay, before --time-scale. */
export const REPLAY_PAUSE_MS = 2_000;

/** A notification delivered, then delivered again later: re-signed, same id (a redelivery). */
export const replayScenario: Scenario = {
  name: "replay",
  summary: "the same notification re-signed and re-sent later, then the same payment under a new notification id",
  expectation:
    "Accept all three (200/204). A redelivery of an already processed notification must be acknowledged again " +
    "(otherwise WeChat keeps redelivering for 24 h), and processed only once; so must a second notification " +
    "id for the same payment (deduplicate by business key, not only by notification id).",
  async run(ctx) {
    const payment = newPayment(ctx);
    const notification = v3Payment(ctx.keys, payment);
    const steps: StepResult[] = [];
    steps.push(await step(ctx, "first delivery", "accept", "a genuine, fresh notification", notification.sign()));
    await delay(Math.round(REPLAY_PAUSE_MS * ctx.timeScale), undefined, { signal: ctx.signal });
    steps.push(
      await step(
        ctx,
        `same notification ${notification.id} re-signed ${Math.round(REPLAY_PAUSE_MS * ctx.timeScale)} ms later`,
        "accept",
        "WeChat redelivers until acknowledged; duplicates are answered like the original",
        notification.sign(new Date()),
      ),
    );
    const again = v3Payment(ctx.keys, payment);
    steps.push(
      await step(
        ctx,
        `same payment (transaction ${payment.transactionId}) under a new notification id`,
        "accept",
        "the payment is already recorded; acknowledge, do not apply twice",
        again.sign(),
      ),
    );
    return steps;
  },
};
