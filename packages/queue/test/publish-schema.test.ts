import { describe, expect, it } from "vitest";
import { z } from "zod";
import { decodeJob, PUBLISH_EVENT_REVISION, PUBLISH_EVENT_TYPES, publishJobSchema } from "../src/index.ts";

/**
 * `notify.publish` is read by the merchant's own consumers, deployed on their own schedule: an event of this release
 * must parse with the schema a consumer copied before it (v1, revision 1 — frozen here as it was), and an event an
 * older worker queued (still waiting, or kept failed for a retry) with this one.
 */
const revision1Schema = z.object({
  v: z.literal(1),
  type: z.enum(PUBLISH_EVENT_TYPES),
  notificationId: z.string().min(1),
  outTradeNo: z.string().min(1),
  orderId: z.string().min(1),
  orderStatus: z.enum(["NOTPAY", "SUCCESS", "CLOSED", "REFUND", "PAYMENT_REVIEW"]),
  reviewReason: z.string().nullable(),
  transactionId: z.string().nullable(),
  outRefundNo: z.string().nullable(),
  amount: z.number().int().nonnegative(),
  occurredAt: z.number().int().nonnegative(),
});

/** An event as a worker of revision 1 queued it. */
const revision1Event = {
  v: 1,
  type: "refund.succeeded",
  notificationId: "v3:1900000109:EV-1",
  outTradeNo: "1001",
  orderId: "o-1",
  orderStatus: "REFUND",
  reviewReason: "RESTOCK_OUT_OF_RANGE",
  transactionId: "4200000001",
  outRefundNo: "RF-1",
  amount: 1_000,
  occurredAt: 1_764_000_000_000,
} as const;

/** The same event as this release's workers queue it (JSON: `subMchid` null for a direct merchant). */
const revision2Event = {
  ...revision1Event,
  rev: 2,
  mchid: "1900000109",
  subMchid: null,
  restockByHand: [
    { skuId: "A", quantity: 2 },
    { skuId: "BIG", quantity: 3 },
  ],
};

describe("publishJobSchema across revisions of v1", () => {
  it("this release writes revision 2", () => {
    expect(PUBLISH_EVENT_REVISION).toBe(2);
  });

  it("a consumer of revision 1 parses a revision-2 event (v stays 1; the added fields are left out)", () => {
    expect(decodeJob(revision1Schema, revision2Event, [1])).toEqual({ ok: true, value: revision1Event });
  });

  it("a consumer of revision 2 parses a revision-1 event an older worker queued: no rev, no merchant", () => {
    const decoded = decodeJob(publishJobSchema, revision1Event, [1]);
    expect(decoded).toEqual({ ok: true, value: revision1Event });
  });

  it("reads the merchant, the sub-merchant and the stock owed from a revision-2 event", () => {
    const decoded = decodeJob(publishJobSchema, revision2Event, [1]);
    expect(decoded).toEqual({ ok: true, value: revision2Event });
    const partner = { ...revision2Event, subMchid: "1900000A11", restockByHand: null };
    expect(publishJobSchema.parse(partner)).toMatchObject({ mchid: "1900000109", subMchid: "1900000A11" });
  });

  it("refuses a revision-2 event without a field of its revision (a consumer may rely on them)", () => {
    for (const field of ["mchid", "subMchid", "restockByHand"] as const) {
      const { [field]: _left, ...missing } = revision2Event;
      expect(publishJobSchema.safeParse(missing).success, field).toBe(false);
    }
    expect(publishJobSchema.safeParse({ ...revision2Event, mchid: "" }).success).toBe(false);
    expect(
      publishJobSchema.safeParse({ ...revision2Event, restockByHand: [{ skuId: "A", quantity: 0 }] }).success,
    ).toBe(false);
  });
});
