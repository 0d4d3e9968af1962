import { describe, expect, it } from "vitest";
import { isUsableJobId } from "../src/index.ts";

describe("isUsableJobId (BullMQ's custom-id rules and its own key names)", () => {
  it("accepts WeChat's ids (jobs queued before the v3 form), our notification ids and our dead-letter ids", () => {
    expect(isUsableJobId("3119dfba-e649-5eec-ab1e-3412bc4d2e17")).toBe(true);
    expect(isUsableJobId("EV-2018022511223320873")).toBe(true);
    expect(isUsableJobId("v2:pay:4200000000000000000000000001")).toBe(true);
    expect(isUsableJobId("v2:refund:R123")).toBe(true);
    expect(isUsableJobId("apply.v2:pay:1900000109.4200000000000000000000000001.1764000000000")).toBe(true);
    expect(isUsableJobId("v3:1900000109:3119dfba-e649-5eec-ab1e-3412bc4d2e17")).toBe(true);
    expect(isUsableJobId("apply.v3:1900000109:3119dfba-e649-5eec-ab1e-3412bc4d2e17.1764000000000")).toBe(true);
    expect(isUsableJobId("eventsX")).toBe(true);
  });

  it("refuses integer-looking ids and ids with a ':' count BullMQ rejects", () => {
    expect(isUsableJobId("12345")).toBe(false);
    expect(isUsableJobId("a:b")).toBe(false);
    expect(isUsableJobId("v2:refund:a:b")).toBe(false);
  });

  it("refuses the names of a queue's own keys, which are not jobs (a stream, a list, a counter, the meta hash)", () => {
    for (const id of ["", "events", "id", "meta", "stalled-check", "wait", "paused", "repeat", "marker", "de"]) {
      expect(isUsableJobId(id), id).toBe(false);
    }
    expect(isUsableJobId("metrics:completed:data")).toBe(false);
  });
});
