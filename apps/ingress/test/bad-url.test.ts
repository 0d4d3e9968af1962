import { v2Reply } from "@wpn/wechatpay";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

/**
 * URLs Fastify's router refuses before any route runs — one it cannot decode (`%zz`), a route parameter longer than
 * its limit — are answered like every other refusal: the route's wire format, a stable code, counted.
 */

let f: IngressFixture;
/** The app's log lines (JSON), for the refusals that have no route to log them. */
const lines: string[] = [];

beforeAll(async () => {
  f = await createIngressFixture({
    label: "ingress-bad-url",
    app: { logger: pino({ level: "info" }, { write: (line) => void lines.push(line) }) },
  });
});
afterAll(async () => {
  await f?.close();
});

const message = "URL_INVALID: request URL is malformed";

describe("a URL the router refuses", () => {
  it("an undecodable APIv2 path: 400 URL_INVALID in the FAIL XML", async () => {
    const response = await f.app.inject({
      method: "POST",
      url: "/notify/v2/%zz",
      headers: { "content-type": "text/xml" },
      payload: "<xml></xml>",
    });
    expect(response.statusCode).toBe(400);
    expect(response.headers["content-type"]).toMatch(/^text\/xml/);
    expect(response.body).toBe(v2Reply(false, message));
  });

  it("an undecodable APIv3 path, and a merchant parameter over the router's length: 400 URL_INVALID in APIv3's JSON", async () => {
    for (const url of ["/notify/v3/%zz", `/notify/v3/${"1".repeat(101)}`]) {
      const response = await f.app.inject({
        method: "POST",
        url,
        headers: { "content-type": "application/json" },
        payload: "{}",
      });
      expect(response.statusCode, url).toBe(400);
      expect(response.json(), url).toEqual({ code: "FAIL", message });
    }
  });

  it('is counted in wpn_ingress_requests_total under route "(url)"', async () => {
    const text = await f.app.ingress.metrics.registry.getSingleMetricAsString("wpn_ingress_requests_total");
    expect(text).toContain('route="(url)",status="400",code="URL_INVALID"} 3');
  });
});

/**
 * A path no route serves is what a notify_url configured with a typo or a trailing slash meets on every delivery:
 * WeChat resends it for 24 h and gives up. Answered 404 NOT_FOUND like every refusal — logged and counted, so that
 * operators see it.
 */
describe("a path no route serves", () => {
  it('404 NOT_FOUND in the path\'s format, logged with its code and counted under route "(none)"', async () => {
    const n = signedV3(f.merchant);
    const v3 = await post(f.app, `/notify/v3/${f.merchant.mchid}/`, n);
    expect(v3.statusCode).toBe(404);
    expect(v3.json()).toEqual({ code: "FAIL", message: "NOT_FOUND: not found" });
    const v2 = await f.app.inject({
      method: "POST",
      url: "/notify/v2/1900000109/x",
      headers: { "content-type": "text/xml" },
      payload: "<xml></xml>",
    });
    expect(v2.statusCode).toBe(404);
    expect(v2.body).toBe(v2Reply(false, "NOT_FOUND: not found"));
    expect((await f.app.inject({ method: "GET", url: "/notify/v3" })).statusCode).toBe(404);
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();

    const text = await f.app.ingress.metrics.registry.getSingleMetricAsString("wpn_ingress_requests_total");
    expect(text).toContain('route="(none)",status="404",code="NOT_FOUND"} 3');
    const logged = lines.map((line) => JSON.parse(line)).filter((entry) => entry.code === "NOT_FOUND");
    expect(logged.map((entry) => [entry.level, entry.method, entry.url, entry.route])).toEqual([
      [40, "POST", `/notify/v3/${f.merchant.mchid}/`, "(none)"],
      [40, "POST", "/notify/v2/1900000109/x", "(none)"],
      [40, "GET", "/notify/v3", "(none)"],
    ]);
  });
});
