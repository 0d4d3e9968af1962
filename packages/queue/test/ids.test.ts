import { describe, expect, it } from "vitest";
import {
  applyJobSchema,
  isNotificationId,
  isUsableJobId,
  NOTIFICATION_ID_MAX_LENGTH,
  parseJobSchema,
  publishJobSchema,
  V3_ENVELOPE_ID,
  v3EnvelopeIdOf,
  v3NotificationId,
} from "../src/index.ts";

describe("APIv3 notification ids", () => {
  it("are `v3:<mchid>:<envelope id>`, and give WeChat's id back — also of a job queued under WeChat's id alone", () => {
    const id = v3NotificationId("1900000109", "EV-2018022511223320873");
    expect(id).toBe("v3:1900000109:EV-2018022511223320873");
    expect(v3EnvelopeIdOf(id)).toBe("EV-2018022511223320873");
    expect(v3EnvelopeIdOf("3119dfba-e649-5eec-ab1e-3412bc4d2e17")).toBe("3119dfba-e649-5eec-ab1e-3412bc4d2e17");
  });

  it("accept the envelope ids WeChat sends, nothing that could be read as another id's part or a key", () => {
    for (const ok of ["3119dfba-e649-5eec-ab1e-3412bc4d2e17", "EV-2018022511223320873", "a", "_".repeat(64)]) {
      expect(V3_ENVELOPE_ID.test(ok), ok).toBe(true);
    }
    for (const bad of ["", "x".repeat(65), "a:b", "a.b", "a b", "a\n", "é", "a*", "{a}"]) {
      expect(V3_ENVELOPE_ID.test(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});

describe("isNotificationId (the ids the ingress makes, checked before a job can poison a bulk)", () => {
  const ours = [
    "v3:1900000109:3119dfba-e649-5eec-ab1e-3412bc4d2e17",
    "v3:1900000109:EV-2018022511223320873",
    "v3:1900000109:wait",
    "v2:pay:1900000109.4200000000000000000000000001",
    "v2:pay:1900000109.4200000000000000000000000001.FAIL",
    "v2:refund:1900000109.50000000001.SUCCESS",
    "v2:refund:1900000109.50000000001.SUCCESS.1900000999",
  ];

  it("accepts our v3 and v2 notification ids, each also a job id a lookup may read", () => {
    for (const id of ours) {
      expect(isNotificationId(id), id).toBe(true);
      expect(isUsableJobId(id), id).toBe(true);
    }
  });

  it("refuses any other id: integer-looking, a ':' count BullMQ rejects, another first part, a queue key, a bare id", () => {
    const malformed = [
      "12345",
      "a:b",
      "v2:refund:a:b",
      "v3:1900000109",
      "v3::x",
      "v3:1900000109:",
      "x:1900000109:wait",
    ];
    const queueKeys = [
      "",
      "wait",
      "paused",
      "active",
      "marker",
      "prioritized",
      "meta",
      "events",
      "id",
      "metrics:a:data",
    ];
    for (const bad of [...malformed, ...queueKeys]) expect(isNotificationId(bad), bad).toBe(false);
    // WeChat's id alone: the job id an ingress from before the v3 form used — still looked up, never made again.
    expect(isNotificationId("3119dfba-e649-5eec-ab1e-3412bc4d2e17")).toBe(false);
    expect(isUsableJobId("3119dfba-e649-5eec-ab1e-3412bc4d2e17")).toBe(true);
  });
});

describe("NOTIFICATION_ID_MAX_LENGTH (what the ingress may queue: every job schema that carries the id accepts it)", () => {
  const ids = (length: number) => ({
    v3: `v3:1900000109:${"a".repeat(length - 14)}`,
    v2: `v2:pay:${"1".repeat(length - 7)}`,
  });
  const parseV3 = {
    v: 1,
    api: "v3",
    mchid: "1900000109",
    receivedAt: 0,
    headers: { timestamp: "0", nonce: "n", serial: "s", signatureType: "WECHATPAY2-SHA256-RSA2048" },
    body: "{}",
  };
  const parseV2 = { v: 1, api: "v2", kind: "pay", mchid: "1900000109", receivedAt: 0, body: "<xml/>" };
  const apply = { v: 1, api: "v3", kind: "payment", mchid: "1900000109", outTradeNo: "T1", receivedAt: 0, body: "{}" };
  const publish = {
    v: 1,
    type: "payment.succeeded",
    outTradeNo: "T1",
    orderId: "o1",
    orderStatus: "SUCCESS",
    reviewReason: null,
    transactionId: null,
    outRefundNo: null,
    amount: 1,
    occurredAt: 0,
  };
  const accepted = (length: number) => {
    const { v3, v2 } = ids(length);
    expect(v3).toHaveLength(length);
    expect(v2).toHaveLength(length);
    return [
      parseJobSchema.safeParse({ ...parseV3, id: v3 }).success,
      parseJobSchema.safeParse({ ...parseV2, id: v2 }).success,
      applyJobSchema.safeParse({ ...apply, notificationId: v3 }).success,
      publishJobSchema.safeParse({ ...publish, notificationId: v2 }).success,
    ];
  };

  it("is the limit of the parse, apply and publish jobs' ids", () => {
    expect(accepted(NOTIFICATION_ID_MAX_LENGTH)).toEqual([true, true, true, true]);
    expect(accepted(NOTIFICATION_ID_MAX_LENGTH + 1)).toEqual([false, false, false, false]);
  });

  it("holds the longest APIv3 id: a 32-digit mchid and a 64-character envelope id", () => {
    const longest = v3NotificationId("9".repeat(32), "e".repeat(64));
    expect(V3_ENVELOPE_ID.test("e".repeat(64))).toBe(true);
    expect(longest.length).toBeLessThanOrEqual(NOTIFICATION_ID_MAX_LENGTH);
  });
});
