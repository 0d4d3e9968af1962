import { v2Reply } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture } from "./support/fixture.ts";

/**
 * URLs Fastify's router refuses before any route runs — one it cannot decode (`%zz`), a route parameter longer than
 * its limit — are answered like every other refusal: the route's wire format, a stable code, counted.
 */

let f: IngressFixture;

beforeAll(async () => {
  f = await createIngressFixture({ label: "ingress-bad-url" });
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
