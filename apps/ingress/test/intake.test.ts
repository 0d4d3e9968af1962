import { describe, expect, it } from "vitest";
import { isUsableJobId } from "../src/enqueue/intake.ts";

describe("isUsableJobId (BullMQ's custom-id rules, checked before a job can poison a bulk)", () => {
  it("accepts WeChat's ids and our derived v2 ids", () => {
    expect(isUsableJobId("3119dfba-e649-5eec-ab1e-3412bc4d2e17")).toBe(true);
    expect(isUsableJobId("EV-2018022511223320873")).toBe(true);
    expect(isUsableJobId("v2:pay:4200000000000000000000000001")).toBe(true);
    expect(isUsableJobId("v2:refund:R123")).toBe(true);
  });

  it("refuses integer-looking ids and ids with a ':' count BullMQ rejects", () => {
    expect(isUsableJobId("12345")).toBe(false);
    expect(isUsableJobId("a:b")).toBe(false);
    expect(isUsableJobId("v2:refund:a:b")).toBe(false);
  });
});
