import { describe, expect, it } from "vitest";
import { LogThrottle } from "../src/log-throttle.ts";

describe("LogThrottle", () => {
  it("lets one line through per interval, counting those in between; reset makes the next one a first", () => {
    const lines = new LogThrottle(10_000);
    expect(lines.take(1_000)).toBe(0);
    expect(lines.take(2_000)).toBeUndefined();
    expect(lines.take(10_999)).toBeUndefined();
    expect(lines.take(11_000)).toBe(2);
    expect(lines.take(12_000)).toBeUndefined();
    lines.reset();
    expect(lines.take(12_001)).toBe(0);
  });
});
