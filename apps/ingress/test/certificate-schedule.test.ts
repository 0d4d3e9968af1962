import type { CertificateRefresher } from "@wpn/wechatpay";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CertificateSchedule } from "../src/merchants/certificate-download.ts";

/** A refresher whose downloads succeed or fail as the test says, counting calls. */
function refresherStub(outcomes: ("ok" | "fail" | "throttled")[]): {
  refresher: CertificateRefresher;
  calls: () => number;
} {
  let calls = 0;
  const refresher = {
    refresh: async () => {
      const outcome = outcomes[calls] ?? "ok";
      calls += 1;
      if (outcome === "fail") throw new Error("download failed");
      return outcome === "ok";
    },
  } as unknown as CertificateRefresher;
  return { refresher, calls: () => calls };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("CertificateSchedule", () => {
  it("downloads at start, then every interval", async () => {
    const { refresher, calls } = refresherStub(["ok", "ok", "ok"]);
    const schedule = new CertificateSchedule(refresher, 3_600_000, 60_000);
    await schedule.start();
    expect(calls()).toBe(1);
    await vi.advanceTimersByTimeAsync(3_599_000);
    expect(calls()).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(calls()).toBe(2);
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(calls()).toBe(3);
    schedule.stop();
  });

  it("after a failed or throttled attempt tries again after the retry delay, never rejecting", async () => {
    const { refresher, calls } = refresherStub(["fail", "throttled", "ok"]);
    const schedule = new CertificateSchedule(refresher, 3_600_000, 60_000);
    await expect(schedule.start()).resolves.toBeUndefined();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls()).toBe(2);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls()).toBe(3);
    // Success: back to the long interval.
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls()).toBe(3);
    schedule.stop();
  });

  it("stops: no download after stop(), even one whose attempt was running", async () => {
    const { refresher, calls } = refresherStub(["ok"]);
    const schedule = new CertificateSchedule(refresher, 1_000, 1_000);
    const first = schedule.start();
    schedule.stop();
    await first;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls()).toBe(1);
  });
});
