import { randomBytes } from "node:crypto";
import { NOTIFICATION_ID_MAX_LENGTH, parseJobV2Schema } from "@wpn/queue";
import { createTestMerchant } from "@wpn/testing";
import { buildV2Xml, encryptV2ReqInfo, signV2, type V2SignType } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createIngressFixture, type IngressFixture } from "./support/fixture.ts";

const SUCCESS_XML = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";
const failXml = (message: string) =>
  `<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[${message}]]></return_msg></xml>`;

let f: IngressFixture;

beforeAll(async () => {
  f = await createIngressFixture({ label: "ingress-v2" });
});
afterAll(async () => {
  await f?.close();
});

function payment(
  signType: V2SignType,
  key = f.merchant.apiV2Key,
  { transactionId = `42000${randomBytes(8).toString("hex").replace(/\D/g, "1")}`, resultCode = "SUCCESS" } = {},
) {
  const fields: Record<string, string> = {
    appid: f.merchant.appid,
    attach: "支付测试",
    bank_type: "CFT",
    cash_fee: "1",
    fee_type: "CNY",
    is_subscribe: "Y",
    mch_id: f.merchant.mchid,
    nonce_str: randomBytes(16).toString("hex"),
    openid: "oUpF8uMEb4qRXf22hE3X68TekukE",
    out_trade_no: `T${Date.now()}`,
    result_code: resultCode,
    return_code: "SUCCESS",
    time_end: "20140903131540",
    total_fee: "1",
    trade_type: "JSAPI",
    transaction_id: transactionId,
  };
  if (signType === "HMAC-SHA256") fields.sign_type = "HMAC-SHA256";
  const xml = buildV2Xml({ ...fields, sign: signV2(fields, key, signType) });
  return { xml, id: `v2:pay:${f.merchant.mchid}.${transactionId}${resultCode === "SUCCESS" ? "" : ".FAIL"}` };
}

function refund(
  key = f.merchant.apiV2Key,
  {
    outRefundNo = `R${randomBytes(6).toString("hex")}`,
    status = "SUCCESS",
    refundId = `5030${randomBytes(8).toString("hex").replace(/\D/g, "7")}`,
    subMchid = undefined as string | undefined,
  } = {},
) {
  const reqInfo = encryptV2ReqInfo(
    {
      transaction_id: "4200000000000000000000000002",
      out_trade_no: "T1",
      refund_id: refundId,
      out_refund_no: outRefundNo,
      total_fee: "100",
      refund_fee: "100",
      refund_status: status,
      success_time: "2026-11-29 10:00:00",
      refund_recv_accout: "支付用户零钱",
      refund_account: "REFUND_SOURCE_RECHARGE_FUNDS",
      refund_request_source: "API",
    },
    key,
  );
  const xml = buildV2Xml({
    return_code: "SUCCESS",
    appid: f.merchant.appid,
    mch_id: f.merchant.mchid,
    nonce_str: randomBytes(16).toString("hex"),
    // Partner mode: the sub-merchant is named outside req_info only, where nothing signs it.
    ...(subMchid === undefined ? {} : { sub_mch_id: subMchid }),
    req_info: reqInfo,
  });
  return { xml, id: `v2:refund:${f.merchant.mchid}.${refundId}.${status}${subMchid ? `.${subMchid}` : ""}` };
}

const postXml = (xml: string, contentType = "text/xml", url = "/notify/v2") =>
  f.app.inject({ method: "POST", url, headers: { "content-type": contentType }, payload: xml });

describe("POST /notify/v2", () => {
  it.each(["MD5", "HMAC-SHA256"] as const)(
    "accepts a %s-signed payment notification with WeChat's exact SUCCESS XML",
    async (signType) => {
      const { xml, id } = payment(signType);
      const response = await postXml(xml);
      expect(response.statusCode).toBe(200);
      expect(response.headers["content-type"]).toBe("text/xml; charset=utf-8");
      expect(response.body).toBe(SUCCESS_XML);
      const data = parseJobV2Schema.parse((await f.queue.getJob(id))?.data);
      expect(data).toMatchObject({ v: 1, api: "v2", id, kind: "pay", mchid: f.merchant.mchid, body: xml });
    },
  );

  it("accepts application/xml too", async () => {
    const { xml, id } = payment("MD5");
    expect((await postXml(xml, "application/xml")).statusCode).toBe(200);
    expect(await f.queue.getJob(id)).toBeDefined();
  });

  it("accepts a refund notification authenticated by decrypting req_info; the job keeps it encrypted", async () => {
    const { xml, id } = refund();
    const response = await postXml(xml);
    expect(response.statusCode).toBe(200);
    expect(response.body).toBe(SUCCESS_XML);
    const data = parseJobV2Schema.parse((await f.queue.getJob(id))?.data);
    expect(data.kind).toBe("refund");
    expect(data.body).toBe(xml);
    expect(data.body).not.toContain("out_refund_no");
  });

  it("a refund notified again with a new status (CHANGE, then SUCCESS) is a new job; each status's redelivery is not", async () => {
    const before = await f.jobsEverAdded();
    const same = { outRefundNo: "R-status-1", refundId: "50300000000000000000000000000001" };
    const abnormal = refund(undefined, { ...same, status: "CHANGE" });
    const success = refund(undefined, { ...same, status: "SUCCESS" });
    for (const { xml } of [abnormal, success, abnormal, success]) {
      const response = await postXml(xml);
      expect(response.statusCode).toBe(200);
      expect(response.body).toBe(SUCCESS_XML);
    }
    expect(await f.jobsEverAdded()).toBe(before + 2);
    expect(abnormal.id).toBe(`v2:refund:${f.merchant.mchid}.50300000000000000000000000000001.CHANGE`);
    for (const { id } of [abnormal, success]) expect(await f.queue.getJob(id)).toBeDefined();
  });

  it("two refunds with the same out_refund_no (two sub-merchants of a service provider) are two jobs, told apart by refund_id", async () => {
    const before = await f.jobsEverAdded();
    // In partner mode every sub-merchant's refunds arrive under the provider's key and route; out_refund_no is
    // unique only per sub-merchant, refund_id across WeChat.
    const ofA = refund(undefined, { outRefundNo: "1", refundId: "50300000000000000000000000000A01" });
    const ofB = refund(undefined, { outRefundNo: "1", refundId: "50300000000000000000000000000B02" });
    for (const { xml } of [ofA, ofB, ofB]) expect((await postXml(xml)).body).toBe(SUCCESS_XML);
    expect(await f.jobsEverAdded()).toBe(before + 2);
    for (const { id } of [ofA, ofB]) expect(await f.queue.getJob(id)).toBeDefined();
  });

  it("partner mode: a copy of a genuine req_info under another outer sub_mch_id does not take the genuine refund's id", async () => {
    const before = await f.jobsEverAdded();
    const same = { outRefundNo: "R-sub-1", refundId: "50300000000000000000000000000S01" };
    // The outer XML carries no sign: anyone holding a delivered req_info can resend it naming another sub-merchant.
    const forged = refund(undefined, { ...same, subMchid: "1900000999" });
    const genuine = refund(undefined, { ...same, subMchid: "1900000109" });
    for (const { xml } of [forged, genuine, genuine]) expect((await postXml(xml)).body).toBe(SUCCESS_XML);
    // Before: one job — the genuine delivery was answered as the forged copy's redelivery, so the worker saw only the
    // copy (MCHID_MISMATCH, REVIEW) and the refund was never recorded.
    expect(await f.jobsEverAdded()).toBe(before + 2);
    expect(genuine.id).toBe(`v2:refund:${f.merchant.mchid}.50300000000000000000000000000S01.SUCCESS.1900000109`);
    for (const { id, xml } of [forged, genuine]) {
      expect(parseJobV2Schema.parse((await f.queue.getJob(id))?.data).body).toBe(xml);
    }
    // A direct merchant's refund (no sub_mch_id, or an empty one) keeps the id without it.
    const direct = refund(undefined, { refundId: "50300000000000000000000000000S02", subMchid: "" });
    expect((await postXml(direct.xml)).body).toBe(SUCCESS_XML);
    expect(
      await f.queue.getJob(`v2:refund:${f.merchant.mchid}.50300000000000000000000000000S02.SUCCESS`),
    ).toBeDefined();
  });

  it("a payment notified as failed, then as successful (same transaction_id), is a new job; each one's redelivery is not", async () => {
    const before = await f.jobsEverAdded();
    const failed = payment("MD5", undefined, { transactionId: "4200000000000000000000000077", resultCode: "FAIL" });
    const paid = payment("MD5", undefined, { transactionId: "4200000000000000000000000077" });
    for (const { xml } of [failed, paid, failed, paid]) {
      const response = await postXml(xml);
      expect(response.statusCode).toBe(200);
      expect(response.body).toBe(SUCCESS_XML);
    }
    expect(await f.jobsEverAdded()).toBe(before + 2);
    expect(failed.id).toBe(`v2:pay:${f.merchant.mchid}.4200000000000000000000000077.FAIL`);
    for (const { id } of [failed, paid]) expect(await f.queue.getJob(id)).toBeDefined();
  });

  it("400 PAYLOAD_INVALID for a refund whose out_refund_no, refund_id, refund_status or sub_mch_id breaks WeChat's format", async () => {
    const before = await f.jobsEverAdded();
    const broken = [
      { outRefundNo: "R.1" },
      { outRefundNo: "R:1" },
      { refundId: "" },
      { refundId: "5030.1" },
      { status: "success" },
      { status: "" },
      { subMchid: "1900.109" },
      { subMchid: "1900:109" },
    ];
    for (const options of broken) {
      const response = await postXml(refund(undefined, options).xml);
      expect(response.statusCode).toBe(400);
      expect(response.body).toBe(failXml("PAYLOAD_INVALID: notification fields are missing or invalid"));
    }
    expect(await f.jobsEverAdded()).toBe(before);
  });

  it("400 PAYLOAD_INVALID for a payment whose transaction_id breaks WeChat's format: a signed X.FAIL does not take X's failure id", async () => {
    const before = await f.jobsEverAdded();
    for (const transactionId of [
      "4200.FAIL",
      "4200:1",
      "4200 1",
      "4200\t1",
      "4200\u20281",
      "４２００",
      "",
      "4".repeat(65),
    ]) {
      const response = await postXml(payment("MD5", undefined, { transactionId }).xml);
      expect(response.statusCode).toBe(400);
      expect(response.body).toBe(failXml("PAYLOAD_INVALID: notification fields are missing or invalid"));
    }
    expect(await f.jobsEverAdded()).toBe(before);
    expect((await postXml(payment("MD5", undefined, { transactionId: "4".repeat(64) }).xml)).body).toBe(SUCCESS_XML);
  });

  it("400 PAYLOAD_INVALID for a refund whose id would be longer than the workers accept; the longest that fits is queued", async () => {
    const before = await f.jobsEverAdded();
    // Each field within its own bound (refund_id 64, refund_status 32, sub_mch_id 32), together 151 characters: a job
    // the workers would refuse (JOB_INVALID, over the parse schema's NOTIFICATION_ID_MAX_LENGTH) after the SUCCESS.
    const long = refund(undefined, { refundId: "5".repeat(64), status: "S".repeat(32), subMchid: "1".repeat(32) });
    expect(long.id).toHaveLength(151);
    const response = await postXml(long.xml);
    expect(response.statusCode).toBe(400);
    expect(response.body).toBe(failXml("PAYLOAD_INVALID: notification fields are missing or invalid"));
    expect(await f.jobsEverAdded()).toBe(before);
    // 128 characters exactly: queued, and the job is one the workers read.
    const fits = refund(undefined, { refundId: "6".repeat(64), status: "S".repeat(9), subMchid: "1".repeat(32) });
    expect(fits.id).toHaveLength(NOTIFICATION_ID_MAX_LENGTH);
    expect((await postXml(fits.xml)).body).toBe(SUCCESS_XML);
    expect(parseJobV2Schema.parse((await f.queue.getJob(fits.id))?.data).id).toBe(fits.id);
  });

  it("answers a redelivery with SUCCESS and no second job", async () => {
    const { xml, id } = payment("MD5");
    const before = await f.jobsEverAdded();
    expect((await postXml(xml)).body).toBe(SUCCESS_XML);
    await (await f.queue.getJob(id))?.remove();
    const again = await postXml(xml);
    expect(again.statusCode).toBe(200);
    expect(again.body).toBe(SUCCESS_XML);
    expect((await f.jobsEverAdded()) - before).toBe(1);
    await vi.waitFor(async () => expect((await f.receipt(id))?.count).toBe(2));
  });

  describe("rejections enqueue nothing", () => {
    async function expectRejected(xml: string, status: number, message: string, contentType = "text/xml") {
      const before = await f.jobsEverAdded();
      const response = await postXml(xml, contentType);
      expect(response.statusCode).toBe(status);
      expect(response.body).toBe(failXml(message));
      expect(await f.jobsEverAdded()).toBe(before);
    }

    it("401 V2_SIGN_INVALID for a sign made with another key", async () => {
      await expectRejected(payment("MD5", "x".repeat(32)).xml, 401, "V2_SIGN_INVALID: sign verification failed");
    });

    it("401 V2_SIGN_INVALID for a payment without sign or req_info", async () => {
      const xml = buildV2Xml({ return_code: "SUCCESS", transaction_id: "4200000000000000000000000009" });
      await expectRejected(xml, 401, "V2_SIGN_INVALID: sign verification failed");
    });

    it("400 V2_RETURN_FAIL for WeChat's return_code FAIL notification, unsigned by design: no verification failure counted", async () => {
      // Protocol notes §2.1: every field but return_code and return_msg — sign included — comes only with return_code
      // SUCCESS. Nothing in it can be authenticated or applied; answering SUCCESS would say it was received and checked.
      const v2Failures = async () =>
        (await f.app.ingress.metrics.verificationFailures.get()).values
          .filter((v) => v.labels.api === "v2")
          .reduce((n, v) => n + v.value, 0);
      const before = await v2Failures();
      const xml = buildV2Xml({ return_code: "FAIL", return_msg: "签名失败" });
      await expectRejected(xml, 400, "V2_RETURN_FAIL: return_code FAIL carries nothing to apply");
      expect(await v2Failures()).toBe(before);
      // A FAIL that does carry a sign has it checked like any other.
      const signed = { return_code: "FAIL", return_msg: "签名失败", mch_id: f.merchant.mchid };
      const forged = buildV2Xml({ ...signed, sign: signV2(signed, "z".repeat(32), "MD5") });
      await expectRejected(forged, 401, "V2_SIGN_INVALID: sign verification failed");
      expect(await v2Failures()).toBe(before + 1);
    });

    it("401 DECRYPT_FAILED for a req_info encrypted with another key", async () => {
      await expectRejected(refund("y".repeat(32)).xml, 401, "DECRYPT_FAILED: req_info could not be decrypted");
    });

    it("400 XML_INVALID for a signed payment carrying a NUL where the sign does not look (a comment)", async () => {
      // The sign still matches; PostgreSQL's text columns refuse U+0000, so the worker could never record it.
      const xml = payment("MD5").xml.replace("<xml>", "<xml><!--\u0000-->");
      await expectRejected(xml, 400, "XML_INVALID: XML body is invalid");
    });

    it("400 XML_INVALID for a DOCTYPE (entity expansion attempt)", async () => {
      const xml = '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><sign>&a;</sign></xml>';
      await expectRejected(xml, 400, "XML_INVALID: XML body is invalid");
    });

    // Junk anyone can send, as large as the body limit lets through: refused by the parser's element cap (or at its
    // first repeated or nested field) before any authentication, for the cost of a genuine notification.
    it.each([
      ["thousands of distinct fields", (i: number) => `<f${i}>1</f${i}>`],
      ["thousands of duplicate empty fields", () => "<a></a>"],
      ["deep nesting", () => "<b>"],
    ])("400 XML_INVALID for 64 KiB of %s; nothing reaches Redis", async (_shape, unit) => {
      const parts = ["<xml>"];
      for (let i = 0, size = "<xml></xml>".length; size + unit(i).length <= 64 * 1024; i++) {
        parts.push(unit(i));
        size += unit(i).length;
      }
      const xml = `${parts.join("")}</xml>`;
      // Receipts of earlier tests are written after their answers: let them land first.
      await f.app.ingress.batcher.drain();
      const keys = async () => (await f.admin.keys(`${f.prefix}:*`)).sort();
      const keysBefore = await keys();
      await expectRejected(xml, 400, "XML_INVALID: XML body is invalid");
      await f.app.ingress.batcher.drain();
      expect(await keys()).toEqual(keysBefore);
    });

    it("415 for a JSON content type", async () => {
      await expectRejected(
        payment("MD5").xml,
        415,
        "UNSUPPORTED_MEDIA_TYPE: unsupported content type",
        "application/json",
      );
    });

    it("413 above the body limit", async () => {
      const xml = `<xml><a>${"a".repeat(64 * 1024)}</a></xml>`;
      await expectRejected(xml, 413, "BODY_TOO_LARGE: request body is too large");
    });
  });
});

describe("POST /notify/v2 without an APIv2 key", () => {
  it("answers 404 V2_DISABLED and enqueues nothing", async () => {
    const merchant = createTestMerchant();
    const { WECHATPAY_APIV2_KEY: _none, ...env } = merchant.env;
    const g = await createIngressFixture({ label: "ingress-v2-off", merchant: { ...merchant, env } });
    try {
      const response = await g.app.inject({
        method: "POST",
        url: "/notify/v2",
        headers: { "content-type": "text/xml" },
        payload: payment("MD5").xml,
      });
      expect(response.statusCode).toBe(404);
      expect(response.body).toBe(failXml("V2_DISABLED: APIv2 notifications are not enabled"));
      expect(await g.jobsEverAdded()).toBe(0);
    } finally {
      await g.close();
    }
  });
});

describe("POST /notify/v2 across an APIv2 key rotation", () => {
  it("accepts the previous key while WECHATPAY_APIV2_KEY_PREVIOUS holds it, and only then", async () => {
    const previous = f.merchant.apiV2Key;
    const next = "n".repeat(32);
    const rotated = await createIngressFixture({
      label: "ingress-v2-rotated",
      merchant: f.merchant,
      env: { WECHATPAY_APIV2_KEY: next, WECHATPAY_APIV2_KEY_PREVIOUS: previous },
    });
    const without = await createIngressFixture({
      label: "ingress-v2-rotated-only",
      merchant: f.merchant,
      env: { WECHATPAY_APIV2_KEY: next },
    });
    const post = (g: IngressFixture, xml: string) =>
      g.app.inject({ method: "POST", url: "/notify/v2", headers: { "content-type": "text/xml" }, payload: xml });
    try {
      for (const n of [payment("MD5", previous), payment("HMAC-SHA256", next), refund(previous), refund(next)]) {
        const response = await post(rotated, n.xml);
        expect(response.statusCode, n.id).toBe(200);
        expect(response.body).toBe(SUCCESS_XML);
        expect(await rotated.queue.getJob(n.id)).toBeDefined();
      }
      expect((await post(rotated, payment("MD5", "o".repeat(32)).xml)).statusCode).toBe(401);
      expect((await post(without, payment("MD5", previous).xml)).statusCode).toBe(401);
      expect((await post(without, refund(previous).xml)).statusCode).toBe(401);
      expect((await post(without, payment("MD5", next).xml)).statusCode).toBe(200);
    } finally {
      await rotated.close();
      await without.close();
    }
  });
});
