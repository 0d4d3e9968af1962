import { describe, expect, it } from "vitest";
import { startBanner, urlHost } from "../scripts/banner.ts";

describe("npm start's banner (scripts/banner.ts)", () => {
  it("names HOST as a URL host: wildcards at the loopback, IPv6 in brackets, anything else as it is", () => {
    expect(urlHost("0.0.0.0")).toBe("127.0.0.1");
    expect(urlHost("::")).toBe("[::1]");
    expect(urlHost("127.0.0.1")).toBe("127.0.0.1");
    expect(urlHost("10.1.2.3")).toBe("10.1.2.3");
    expect(urlHost("fd00::5")).toBe("[fd00::5]");
    expect(urlHost("pay-notify.internal")).toBe("pay-notify.internal");
  });

  it("lists each app's URL, the workers' health ports and free ports", () => {
    const settings = {
      HOST: "0.0.0.0",
      PORT: 3000,
      DASHBOARD_PORT: 3001,
      WORKER_HEALTH_PORT: 3002,
      WORKER_PROCESSES: 3,
    };
    expect(startBanner(settings).split("\n")).toEqual([
      "Ingress:   http://127.0.0.1:3000/notify/v3",
      "Dashboard: http://127.0.0.1:3001/",
      "Workers:   3 process(es), health at http://127.0.0.1:3002/health/ready … port 3004 (WORKER_HEALTH_PORT + index). Ctrl-C stops everything.",
    ]);
    expect(startBanner({ ...settings, WORKER_HEALTH_PORT: 0 })).toMatch(
      /^Ingress: {3}http:\/\/127\.0\.0\.1:3000\/notify\/v3\n.*\nWorkers: {3}3 process\(es\), health on free ports/s,
    );
  });
});
