import { randomBytes } from "node:crypto";
import { buildV2Xml, signV2 } from "@wpn/wechatpay";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INGRESS_ERRORS, type IngressErrorCode } from "../src/errors.ts";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

/**
 * Property tests at the wire: a genuine notification with one hostile change is never acknowledged, is answered with
 * the documented status and exact FAIL body of a stable code, and leaves nothing in Redis. (The package's own
 * properties, packages/wechatpay/test/properties.test.ts, cover the primitives; these cover how the routes use them.)
 * Every run signs one notification (RSA, ~1 ms), so runs are kept in the low hundreds.
 */
let f: IngressFixture;

beforeAll(async () => {
  f = await createIngressFixture({ label: "ingress-hostile" });
});
afterAll(async () => {
  await f?.close();
});

/** The code of a refusal, after checking that its status and body are exactly the documented ones. */
function refusalCode(statusCode: number, body: string, format: (message: string) => string): IngressErrorCode {
  const match = /([A-Z0-9_]+): /.exec(body);
  expect(match, body).not.toBeNull();
  const code = (match as RegExpExecArray)[1] as IngressErrorCode;
  expect(INGRESS_ERRORS[code], code).toBeDefined();
  expect(statusCode).toBe(INGRESS_ERRORS[code].status);
  expect(body).toBe(format(`${code}: ${INGRESS_ERRORS[code].message}`));
  return code;
}

const v3Fail = (message: string) => JSON.stringify({ code: "FAIL", message });
const v2Fail = (message: string) =>
  `<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[${message}]]></return_msg></xml>`;

/** A header value as the ingress reads it: without the spaces and tabs HTTP allows around it. */
const ows = (value: string) => value.replace(/^[ \t]+|[ \t]+$/g, "");

const SIGNATURE_HEADERS = [
  "Wechatpay-Timestamp",
  "Wechatpay-Nonce",
  "Wechatpay-Signature",
  "Wechatpay-Serial",
] as const;
/** Header values a proxy or an attacker may send: printable ASCII, Latin-1 (obs-text), tabs and spaces. */
const headerValue = fc.string({
  unit: fc.oneof(
    fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)),
    fc.constantFrom("\t", " ", "+", "=", "0", "e", ","),
  ),
  maxLength: 40,
});

describe("APIv3: one hostile change to a genuine notification", () => {
  const mutation = fc.oneof(
    fc.record({
      kind: fc.constant("header" as const),
      name: fc.constantFrom(...SIGNATURE_HEADERS),
      value: headerValue,
    }),
    fc.record({ kind: fc.constant("byte" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
    fc.record({
      kind: fc.constant("affix" as const),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }),
      before: fc.boolean(),
    }),
    fc.record({ kind: fc.constant("signatureType" as const), value: headerValue }),
  );

  it("is never 2xx: the documented status, the exact FAIL body of a stable code, nothing queued", async () => {
    const added = await f.jobsEverAdded();
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const n = signedV3(f.merchant);
        const headers: Record<string, string> = { ...n.headers };
        let body = n.body;
        if (m.kind === "header") {
          // A value that trims to the genuine one is the genuine header (spaces and tabs around values are HTTP's
          // optional whitespace): not a change.
          fc.pre(ows(m.value) !== ows(headers[m.name] as string));
          headers[m.name] = m.value;
        } else if (m.kind === "byte") {
          body = Buffer.from(n.body);
          const at = m.at % body.length;
          body[at] = (body[at] as number) ^ m.xor;
        } else if (m.kind === "affix") {
          const extra = Buffer.from(m.bytes);
          body = m.before ? Buffer.concat([extra, n.body]) : Buffer.concat([n.body, extra]);
        } else {
          fc.pre(ows(m.value) !== "" && ows(m.value) !== "WECHATPAY2-SHA256-RSA2048");
          headers["Wechatpay-Signature-Type"] = m.value;
        }
        const response = await post(f.app, "/notify/v3", { headers, body });
        const code = refusalCode(response.statusCode, response.body, v3Fail);
        expect([
          "HEADER_MISSING",
          "HEADER_INVALID",
          "TIMESTAMP_SKEW",
          "SERIAL_UNKNOWN",
          "SIGNATURE_INVALID",
          "SIGNATURE_PROBE",
          "SIGNATURE_TYPE_UNSUPPORTED",
        ]).toContain(code);
        expect(await f.queue.getJob(n.jobId)).toBeUndefined();
      }),
      {
        numRuns: 200,
        // Edge values the generators reach only rarely, checked on every run: whitespace or nothing but a no-break
        // space as a header (blank: missing), a signature type in another case, the probe prefix, and a space or a
        // newline after the JSON body (the APIv3 twin of the sign with a trailing space, 8e2e7d0).
        examples: [
          [{ kind: "header", name: "Wechatpay-Timestamp", value: " \t " }],
          [{ kind: "header", name: "Wechatpay-Nonce", value: "\u00a0" }],
          [{ kind: "header", name: "Wechatpay-Timestamp", value: "+1" }],
          [{ kind: "header", name: "Wechatpay-Signature", value: "WECHATPAY/SIGNTEST/" }],
          [{ kind: "signatureType", value: "wechatpay2-sha256-rsa2048" }],
          [{ kind: "affix", bytes: Uint8Array.of(0x20), before: false }],
          [{ kind: "affix", bytes: Uint8Array.of(0x0a), before: false }],
          [{ kind: "affix", bytes: Uint8Array.of(0xef, 0xbb, 0xbf), before: true }],
        ],
      },
    );
    expect(await f.jobsEverAdded()).toBe(added);
  });
});

describe("APIv2: one hostile change to a genuinely signed payment notification", () => {
  function genuine(): Record<string, string> {
    const fields: Record<string, string> = {
      appid: f.merchant.appid,
      attach: "支付测试",
      bank_type: "CFT",
      mch_id: f.merchant.mchid,
      nonce_str: randomBytes(16).toString("hex"),
      out_trade_no: `T${randomBytes(6).toString("hex")}`,
      result_code: "SUCCESS",
      return_code: "SUCCESS",
      total_fee: "1",
      transaction_id: `42000${randomBytes(8).toString("hex").replace(/\D/g, "1")}`,
    };
    return { ...fields, sign: signV2(fields, f.merchant.apiV2Key, "MD5") };
  }
  const fieldName = fc.constantFrom("appid", "attach", "mch_id", "total_fee", "transaction_id", "result_code", "sign");
  const text = fc.string({ unit: fc.constantFrom(..."0aZ_中 &<>]"), minLength: 1, maxLength: 8 });
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant("append" as const), name: fieldName, value: text }),
    fc.record({ kind: fc.constant("drop" as const), name: fieldName }),
    fc.record({ kind: fc.constant("rename" as const), name: fieldName }),
    fc.record({
      kind: fc.constant("add" as const),
      name: fc.constantFrom("coupon_fee", "sub_mch_id", "zz", "Sign"),
      value: text,
    }),
    fc.record({ kind: fc.constant("duplicate" as const), name: fieldName, value: text }),
    fc.record({ kind: fc.constant("signType" as const) }),
  );

  it("is never 200 SUCCESS: the documented status, the exact FAIL XML of a stable code, nothing queued", async () => {
    const added = await f.jobsEverAdded();
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const fields = genuine();
        const id = `v2:pay:${f.merchant.mchid}.${fields.transaction_id}`;
        let xml: string;
        if (m.kind === "append") xml = buildV2Xml({ ...fields, [m.name]: `${fields[m.name]}${m.value}` });
        else if (m.kind === "drop") {
          const { [m.name]: _dropped, ...rest } = fields;
          xml = buildV2Xml(rest);
        } else if (m.kind === "rename") {
          const { [m.name]: value, ...rest } = fields;
          xml = buildV2Xml({ ...rest, [m.name.toUpperCase()]: value as string });
        } else if (m.kind === "add") xml = buildV2Xml({ ...fields, [m.name]: m.value });
        else if (m.kind === "duplicate") {
          xml = buildV2Xml(fields).replace("</xml>", `<${m.name}><![CDATA[${m.value}]]></${m.name}></xml>`);
        } else {
          // The HMAC-SHA256 sign of other fields than those sent: the sign of a sibling message.
          const { sign: _sign, ...unsigned } = fields;
          xml = buildV2Xml({
            ...unsigned,
            sign: signV2({ ...unsigned, total_fee: "100" }, f.merchant.apiV2Key, "HMAC-SHA256"),
          });
        }
        const response = await f.app.inject({
          method: "POST",
          url: "/notify/v2",
          headers: { "content-type": "text/xml" },
          payload: xml,
        });
        const code = refusalCode(response.statusCode, response.body, v2Fail);
        expect(["V2_SIGN_INVALID", "XML_INVALID"]).toContain(code);
        expect(await f.queue.getJob(id)).toBeUndefined();
      }),
      {
        numRuns: 300,
        examples: [
          // The counterexample a CI run found (seed -1023035082): a space after the sign was trimmed away.
          [{ kind: "append", name: "sign", value: " " }],
          // Edge values reached only rarely, checked on every run: whitespace-only text appended to a signed value or
          // added as a field of its own (an empty value is not signed; a blank one is), a second sign.
          [{ kind: "append", name: "attach", value: " " }],
          [{ kind: "append", name: "total_fee", value: " " }],
          [{ kind: "add", name: "zz", value: " " }],
          [{ kind: "add", name: "Sign", value: " " }],
          [{ kind: "duplicate", name: "sign", value: " " }],
          [{ kind: "rename", name: "sign" }],
        ],
      },
    );
    expect(await f.jobsEverAdded()).toBe(added);
  });
});
