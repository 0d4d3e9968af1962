import { testRsaKeyPair } from "@wpn/testing";
import { CertificateRefresher, KeyStore, loadCertificate } from "@wpn/wechatpay";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CertificateSchedule } from "../src/merchants/certificate-download.ts";
import { platformCertificate } from "./support/certificate.ts";

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

/** A jitter source that never shortens a wait. */
const noJitter = () => 0;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("CertificateSchedule", () => {
  it("downloads at start, then every interval", async () => {
    const { refresher, calls } = refresherStub(["ok", "ok", "ok"]);
    const schedule = new CertificateSchedule(refresher, { intervalMs: 3_600_000, retryMs: 60_000, random: noJitter });
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
    const schedule = new CertificateSchedule(refresher, { intervalMs: 3_600_000, retryMs: 60_000, random: noJitter });
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

  it("backs off after failures in a row: the retry wait doubles up to the interval, and success resets it", async () => {
    const { refresher, calls } = refresherStub(["fail", "fail", "fail", "fail", "fail", "ok", "fail"]);
    const schedule = new CertificateSchedule(refresher, { intervalMs: 300_000, retryMs: 60_000, random: noJitter });
    await schedule.start();
    // Waits after failures 1..4: 60 s, 120 s, 240 s, then capped at the 300 s interval.
    for (const [waitMs, expected] of [
      [60_000, 2],
      [120_000, 3],
      [240_000, 4],
      [300_000, 5],
      [300_000, 6],
    ] as const) {
      await vi.advanceTimersByTimeAsync(waitMs - 1);
      expect(calls()).toBe(expected - 1);
      await vi.advanceTimersByTimeAsync(1);
      expect(calls()).toBe(expected);
    }
    // The sixth worked: the interval, then a failure waits the first retry again, not the last backoff.
    await vi.advanceTimersByTimeAsync(300_000);
    expect(calls()).toBe(7);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls()).toBe(8);
    schedule.stop();
  });

  it("jitter shortens each wait by up to a tenth, never lengthens it", async () => {
    const { refresher, calls } = refresherStub(["ok", "ok", "ok"]);
    let draw = 0.999;
    const schedule = new CertificateSchedule(refresher, {
      intervalMs: 1_000_000,
      retryMs: 60_000,
      random: () => draw,
    });
    await schedule.start();
    draw = 0;
    // The wait after the first download drew the largest: 90.01 % of the interval.
    await vi.advanceTimersByTimeAsync(900_099);
    expect(calls()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls()).toBe(2);
    // The next drew the smallest: the whole interval, never more.
    await vi.advanceTimersByTimeAsync(999_999);
    expect(calls()).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls()).toBe(3);
    schedule.stop();
  });

  // The waits meet a real refresher, whose throttle allows one download a minute (the default retry delay): a wait
  // shortened below that minute by the jitter was throttled and waited another, so the first retry after a failure
  // (measured against the simulator: 114 s after the failed start) and every download of a 60 s period came after
  // about two minutes.
  it("a wait the jitter shortens never falls within the refresher's minute: retries after a minute, a 60 s period kept", async () => {
    const cert = loadCertificate(platformCertificate(testRsaKeyPair().privateKey).pem);
    const outcomes = ["fail", "ok", "ok", "ok"];
    let downloads = 0;
    const refresher = new CertificateRefresher({
      store: new KeyStore(),
      now: () => Date.now(),
      download: async () => {
        const outcome = outcomes[downloads] ?? "ok";
        downloads += 1;
        if (outcome === "fail") throw new Error("download failed");
        return [cert];
      },
    });
    const schedule = new CertificateSchedule(refresher, { intervalMs: 60_000, random: () => 0.5 });
    await schedule.start();
    expect(downloads).toBe(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(downloads).toBe(2);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(downloads).toBe(4);
    schedule.stop();
  });

  it("stops: no download after stop(), even one whose attempt was running", async () => {
    const { refresher, calls } = refresherStub(["ok"]);
    const schedule = new CertificateSchedule(refresher, { intervalMs: 1_000, retryMs: 1_000, random: noJitter });
    const first = schedule.start();
    schedule.stop();
    await first;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls()).toBe(1);
  });
});
