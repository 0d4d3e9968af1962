import { randomBytes } from "node:crypto";
import { ConfigError, loadConfig } from "@wpn/config";
import { createTestMerchant } from "@wpn/testing";
import { buildV2Xml, createSignedV3Notification, parseV2Xml, parseV3Envelope, signV2 } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture, post } from "./support/fixture.ts";

/**
 * INGRESS_BODY_LIMIT_BYTES bounds what the ingress acknowledges; the workers open the queued body with
 * @wpn/wechatpay's parsers at their default limits (APIv2 XML 64 KiB, APIv3 envelope 256 KiB;
 * apps/worker/src/domain/notification.ts). A body between the two was answered success and then dead-lettered
 * (XML_TOO_LARGE, BODY_TOO_LARGE), so the setting may not exceed what the workers open.
 */

const LARGEST = 64 * 1024;
const merchant = createTestMerchant();
let f: IngressFixture;

beforeAll(async () => {
  f = await createIngressFixture({
    label: "ingress-body-limit",
    merchant,
    env: { INGRESS_BODY_LIMIT_BYTES: String(LARGEST) },
  });
});
afterAll(async () => {
  await f?.close();
});

/** A field of `bytes` ASCII characters, so a body can be made to measure. */
const padding = (bytes: number) => "x".repeat(bytes);

describe("INGRESS_BODY_LIMIT_BYTES and the workers' limits", () => {
  it("may not be set above what the workers open (64 KiB)", () => {
    expect(() => loadConfig({ ...merchant.env, INGRESS_BODY_LIMIT_BYTES: String(LARGEST + 1) })).toThrow(ConfigError);
    expect(() => loadConfig({ ...merchant.env, INGRESS_BODY_LIMIT_BYTES: String(10 * 1024 * 1024) })).toThrow(
      /INGRESS_BODY_LIMIT_BYTES/,
    );
    expect(loadConfig({ ...merchant.env, INGRESS_BODY_LIMIT_BYTES: String(LARGEST) }).INGRESS_BODY_LIMIT_BYTES).toBe(
      LARGEST,
    );
  });

  it("at the largest limit, an APIv2 body the ingress acknowledges is one the workers' parser opens", async () => {
    const fields: Record<string, string> = {
      appid: merchant.appid,
      mch_id: merchant.mchid,
      nonce_str: randomBytes(16).toString("hex"),
      out_trade_no: `T${Date.now()}`,
      result_code: "SUCCESS",
      return_code: "SUCCESS",
      time_end: "20140903131540",
      total_fee: "1",
      transaction_id: "4200000000000000000000000064",
      attach: "",
    };
    const size = (attach: string) => {
      const withAttach = { ...fields, attach };
      return Buffer.byteLength(buildV2Xml({ ...withAttach, sign: signV2(withAttach, merchant.apiV2Key, "MD5") }));
    };
    fields.attach = padding(LARGEST - size(""));
    const xml = buildV2Xml({ ...fields, sign: signV2(fields, merchant.apiV2Key, "MD5") });
    expect(Buffer.byteLength(xml)).toBe(LARGEST);
    const response = await f.app.inject({
      method: "POST",
      url: "/notify/v2",
      headers: { "content-type": "text/xml" },
      payload: xml,
    });
    expect(response.statusCode).toBe(200);
    const job = await f.queue.getJob(`v2:pay:${merchant.mchid}.${fields.transaction_id}`);
    expect(parseV2Xml(job?.data.body).attach).toBe(fields.attach);
  });

  it("at the largest limit, an APIv3 body the ingress acknowledges is one the workers' parser opens", async () => {
    const signed = (summary: string) =>
      createSignedV3Notification({
        eventType: "TRANSACTION.SUCCESS",
        summary,
        originalType: "transaction",
        resource: { mchid: merchant.mchid, out_trade_no: "T1" },
        apiV3Key: Buffer.from(merchant.apiV3Key, "utf8"),
        privateKey: merchant.platformPrivateKey,
        serial: merchant.publicKeyId,
      });
    const n = signed(padding(LARGEST - signed("").body.length));
    expect(n.body.length).toBe(LARGEST);
    expect((await post(f.app, "/notify/v3", n)).statusCode).toBe(204);
    const job = await f.queue.getJob(`v3:${merchant.mchid}:${n.id}`);
    expect(parseV3Envelope(job?.data.body).id).toBe(n.id);
  });
});
