import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { gzipSync } from "node:zlib";
import { buildV2Xml, buildV3Message, signV2, signV3Message } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIngressFixture, type IngressFixture, post, signedV3 } from "./support/fixture.ts";

/** Unusual-but-legal and hostile HTTP input at the wire: what WeChat may send, and what an attacker may. */
let f: IngressFixture;

beforeAll(async () => {
  f = await createIngressFixture({ label: "ingress-wire" });
});
afterAll(async () => {
  await f?.close();
});

const fail = (message: string) => JSON.stringify({ code: "FAIL", message });

/** A genuine notification whose signature headers are re-signed over `timestamp` (the exact header string). */
function resignedAt(timestamp: string) {
  const n = signedV3(f.merchant);
  const nonce = n.headers["Wechatpay-Nonce"] as string;
  const message = buildV3Message(timestamp, nonce, n.body);
  const signature = signV3Message(message, f.merchant.platformPrivateKey);
  return { ...n, headers: { ...n.headers, "Wechatpay-Timestamp": timestamp, "Wechatpay-Signature": signature } };
}

/**
 * Sends `n` over real HTTP with the extra header lines `extra` after its own (a flat raw-header list: Node's object form
 * would merge names that differ only in case into one line).
 */
async function postOverHttp(
  n: { headers: Record<string, string>; body: Buffer | string },
  extra: Record<string, string>,
  { host = true } = {},
): Promise<{ statusCode: number; body: string }> {
  if (!f.app.server.listening) await f.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = f.app.server.address() as AddressInfo;
  // With a raw list Node adds no framing header of its own.
  const length = [...(host ? ["Host", `127.0.0.1:${port}`] : []), "Content-Length", String(Buffer.byteLength(n.body))];
  const lines = [...Object.entries(n.headers), ...Object.entries(extra)].flat().concat(length);
  return new Promise((resolve, reject) => {
    const req = request(`http://127.0.0.1:${port}/notify/v3`, { method: "POST", headers: lines }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ statusCode: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end(n.body);
  });
}

describe("APIv3 wire probes: each signature header sent twice, the second line in another case", () => {
  const invalid = fail("HEADER_INVALID: a Wechatpay-* signature header is malformed");
  it.each(["Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"])(
    "%s twice with different values is 400 HEADER_INVALID, nothing queued; twice the same value is 204",
    async (name) => {
      const n = signedV3(f.merchant);
      const value = n.headers[name] as string;
      // A value that would pass a lenient reader: the genuine one with a character changed at its end.
      const other = `${value.slice(0, -2)}${value.at(-2) === "A" ? "B" : "A"}${value.at(-1)}`;
      for (const [first, second] of [
        [value, other],
        [other, value],
      ]) {
        const response = await postOverHttp(
          { ...n, headers: { ...n.headers, [name]: first as string } },
          { [name.toUpperCase()]: second as string },
        );
        expect(response).toEqual({ statusCode: 400, body: invalid });
      }
      expect(await f.queue.getJob(n.jobId)).toBeUndefined();
      const same = await postOverHttp(n, { [name.toUpperCase()]: value });
      expect(same).toEqual({ statusCode: 204, body: "" });
    },
  );
});

describe("APIv3 wire probes", () => {
  it("Content-Length and Transfer-Encoding together (a smuggling attempt) are refused by Node: 400 HTTP_INVALID, nothing queued", async () => {
    if (!f.app.server.listening) await f.app.listen({ host: "127.0.0.1", port: 0 });
    const { port } = f.app.server.address() as AddressInfo;
    const n = signedV3(f.merchant);
    const head = Object.entries(n.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    const chunked = `${n.body.length.toString(16)}\r\n${n.body.toString("utf8")}\r\n0\r\n\r\n`;
    const wire = `POST /notify/v3 HTTP/1.1\r\nHost: x\r\n${head}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`;
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => socket.end(wire));
      let text = "";
      socket.setEncoding("utf8");
      socket.on("data", (c: string) => {
        text += c;
      });
      socket.on("close", () => resolve(text));
      socket.on("error", reject);
    });
    expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 400 Bad Request");
    expect(answer).toContain("HTTP_INVALID");
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();
  });

  it("an HTTP/1.1 notification without a Host header is verified like any other: 204 (Host carries nothing we use)", async () => {
    const n = signedV3(f.merchant);
    const response = await postOverHttp(n, {}, { host: false });
    expect(response).toEqual({ statusCode: 204, body: "" });
    expect(await f.queue.getJob(n.jobId)).toBeDefined();
  });

  it("header names in odd case are the same headers: 204", async () => {
    const n = signedV3(f.merchant);
    const headers = Object.fromEntries(
      Object.entries(n.headers).map(([k, v], i) => [i % 2 ? k.toUpperCase() : k.toLowerCase(), v]),
    );
    const response = await post(f.app, "/notify/v3", { headers, body: n.body });
    expect(response.statusCode).toBe(204);
    expect(await f.queue.getJob(n.jobId)).toBeDefined();
  });

  it.each([
    "application/json; charset=UTF-8",
    "APPLICATION/JSON",
    "application/json;charset=utf-8",
    "Application/Json ; charset=utf-8",
  ])("Content-Type %j is JSON: 204", async (type) => {
    const n = signedV3(f.merchant);
    const response = await post(f.app, "/notify/v3", { headers: { ...n.headers, "Content-Type": type }, body: n.body });
    expect(response.statusCode).toBe(204);
    expect(await f.queue.getJob(n.jobId)).toBeDefined();
  });

  it.each(["application/jsonp", "application/json-seq", "text/json", "application/x-json"])(
    "a look-alike Content-Type %j is 415 UNSUPPORTED_MEDIA_TYPE",
    async (type) => {
      const n = signedV3(f.merchant);
      const response = await post(f.app, "/notify/v3", {
        headers: { ...n.headers, "Content-Type": type },
        body: n.body,
      });
      expect(response.statusCode).toBe(415);
      expect(await f.queue.getJob(n.jobId)).toBeUndefined();
    },
  );

  it("a body with a UTF-8 BOM before the signed bytes is 401 SIGNATURE_INVALID (the signature covers the exact bytes)", async () => {
    const n = signedV3(f.merchant);
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), n.body]);
    const response = await post(f.app, "/notify/v3", { headers: n.headers, body });
    expect(response.statusCode).toBe(401);
    expect(response.body).toContain("SIGNATURE_INVALID");
  });

  it("a gzip-encoded body (Content-Encoding: gzip) is 415 UNSUPPORTED_MEDIA_TYPE, not a forgery: nothing queued, no verification failure counted", async () => {
    const failures = () =>
      f.app.ingress.metrics.registry.getSingleMetricAsString("wpn_ingress_verification_failures_total");
    const before = await failures();
    const n = signedV3(f.merchant);
    for (const [encoding, body] of [
      ["gzip", gzipSync(n.body)],
      ["GZIP", gzipSync(n.body)],
      ["br", n.body],
    ] as const) {
      const response = await post(f.app, "/notify/v3", {
        headers: { ...n.headers, "Content-Encoding": encoding },
        body,
      });
      expect(response.statusCode).toBe(415);
      expect(response.body).toBe(fail("UNSUPPORTED_MEDIA_TYPE: unsupported content type"));
    }
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();
    expect(await failures()).toBe(before);
    const identity = await post(f.app, "/notify/v3", {
      ...n,
      headers: { ...n.headers, "Content-Encoding": "identity" },
    });
    expect(identity.statusCode).toBe(204);
  });

  it("an empty body with valid headers is 401 SIGNATURE_INVALID, nothing queued", async () => {
    const n = signedV3(f.merchant);
    const response = await post(f.app, "/notify/v3", { headers: n.headers, body: "" });
    expect(response.statusCode).toBe(401);
    expect(response.body).toContain("SIGNATURE_INVALID");
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();
  });

  it("a timestamp with a leading zero, signed as sent, verifies (the signature covers that string): 204", async () => {
    const ts = `0${Math.floor(Date.now() / 1000)}`;
    const n = resignedAt(ts);
    const response = await post(f.app, "/notify/v3", n);
    expect(response.statusCode).toBe(204);
  });

  it.each([
    ["a plus sign", (s: number) => `+${s}`],
    ["an inner space", (s: number) => `${String(s).slice(0, 5)} ${String(s).slice(5)}`],
    ["13 digits (milliseconds)", (s: number) => `${s}000`],
    ["a fraction", (s: number) => `${s}.0`],
    ["exponent form", (s: number) => `${s / 1e9}e9`],
  ])("a timestamp with %s, even signed as sent, is 400 HEADER_INVALID", async (_what, form) => {
    const n = resignedAt(form(Math.floor(Date.now() / 1000)));
    const response = await post(f.app, "/notify/v3", n);
    expect(response.statusCode).toBe(400);
    expect(response.body).toContain("HEADER_INVALID");
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();
  });

  it("a timestamp padded with outer spaces, signed without them, verifies (values are trimmed, as WeChat's SDKs do)", async () => {
    const ts = String(Math.floor(Date.now() / 1000));
    const n = resignedAt(ts);
    const response = await post(f.app, "/notify/v3", {
      ...n,
      headers: { ...n.headers, "Wechatpay-Timestamp": `  ${ts}  ` },
    });
    expect(response.statusCode).toBe(204);
  });

  it.each([
    ["spaces inside", (s: string) => `${s.slice(0, 100)} ${s.slice(100)}`],
    ["the URL-safe alphabet", (s: string) => s.replaceAll("+", "-").replaceAll("/", "_")],
  ])("a signature in base64 with %s is 401 SIGNATURE_INVALID", async (_what, form) => {
    // Retry until the signature holds a + or / so the URL-safe form differs.
    let n = signedV3(f.merchant);
    while (!/[+/]/.test(n.headers["Wechatpay-Signature"] as string)) n = signedV3(f.merchant);
    const signature = form(n.headers["Wechatpay-Signature"] as string);
    const response = await post(f.app, "/notify/v3", {
      ...n,
      headers: { ...n.headers, "Wechatpay-Signature": signature },
    });
    expect(response.statusCode).toBe(401);
    expect(response.body).toBe(fail("SIGNATURE_INVALID: signature verification failed"));
    expect(await f.queue.getJob(n.jobId)).toBeUndefined();
  });

  it("a chunked body over the cap is answered 413 before the sender finished sending it", async () => {
    if (!f.app.server.listening) await f.app.listen({ host: "127.0.0.1", port: 0 });
    const { port } = f.app.server.address() as AddressInfo;
    const n = signedV3(f.merchant);
    const result = await new Promise<{ status: number; body: string; sentBytes: number }>((resolve, reject) => {
      let sent = 0;
      let answered = false;
      const req = request(
        `http://127.0.0.1:${port}/notify/v3`,
        { method: "POST", headers: { ...n.headers, "Transfer-Encoding": "chunked" } },
        (res) => {
          answered = true;
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            body += c;
          });
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, body, sentBytes: sent });
            req.destroy();
          });
        },
      );
      req.on("error", (error) => {
        if (!answered) reject(error);
      });
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      // Up to 16 MiB, paced, never ended: only an early answer ends this.
      const pump = () => {
        if (answered || sent >= 16 * 1024 * 1024) return;
        sent += chunk.length;
        req.write(chunk, () => setImmediate(pump));
      };
      pump();
    });
    expect(result.status).toBe(413);
    expect(result.body).toBe(fail("BODY_TOO_LARGE: request body is too large"));
    expect(result.sentBytes).toBeLessThan(16 * 1024 * 1024);
  });
});

const postXml = (xml: string | Buffer, contentType = "text/xml") =>
  f.app.inject({ method: "POST", url: "/notify/v2", headers: { "content-type": contentType }, payload: xml });

function paymentFields(): Record<string, string> {
  const fields: Record<string, string> = {
    appid: f.merchant.appid,
    bank_type: "CFT",
    cash_fee: "1",
    fee_type: "CNY",
    mch_id: f.merchant.mchid,
    nonce_str: randomBytes(16).toString("hex"),
    openid: "oUpF8uMEb4qRXf22hE3X68TekukE",
    out_trade_no: `T${Date.now()}`,
    result_code: "SUCCESS",
    return_code: "SUCCESS",
    time_end: "20140903131540",
    total_fee: "1",
    trade_type: "JSAPI",
    transaction_id: `42000${randomBytes(8).toString("hex").replace(/\D/g, "1")}`,
  };
  return { ...fields, sign: signV2(fields, f.merchant.apiV2Key, "MD5") };
}

describe("APIv2 wire probes", () => {
  it.each(["text/xml; charset=UTF-8", "TEXT/XML", "application/xml;charset=utf-8"])(
    "Content-Type %j is XML: 200 SUCCESS",
    async (type) => {
      const response = await postXml(buildV2Xml(paymentFields()), type);
      expect(response.statusCode).toBe(200);
      expect(response.body).toContain("SUCCESS");
    },
  );

  it.each(["text/xmlx", "text/xml-external-parsed-entity", "application/xhtml+xml"])(
    "a look-alike Content-Type %j is 415",
    async (type) => {
      const response = await postXml(buildV2Xml(paymentFields()), type);
      expect(response.statusCode).toBe(415);
    },
  );

  it("`text/xml; charset=GBK` with GBK bytes (not UTF-8) is 400 XML_INVALID, never read as something else", async () => {
    const fields = paymentFields();
    // "支付" in GBK: D6 A7 B8 B6 — not valid UTF-8.
    const xml = Buffer.concat([
      Buffer.from(buildV2Xml(fields).replace("</xml>", "<attach>")),
      Buffer.from([0xd6, 0xa7, 0xb8, 0xb6]),
      Buffer.from("</attach></xml>"),
    ]);
    const response = await postXml(xml, "text/xml; charset=GBK");
    expect(response.statusCode).toBe(400);
    expect(response.body).toContain("XML_INVALID");
  });

  it("a UTF-8 BOM before a genuine signed notification is accepted (the sign covers fields, not bytes): 200 SUCCESS", async () => {
    // The queued body keeps the BOM; the worker reads it with the same parser, which accepts it the same way.
    const xml = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(buildV2Xml(paymentFields()))]);
    const response = await postXml(xml);
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain("SUCCESS");
  });

  it("a gzip-encoded body (Content-Encoding: gzip) is 415 UNSUPPORTED_MEDIA_TYPE, not XML_INVALID", async () => {
    const xml = buildV2Xml(paymentFields());
    const response = await f.app.inject({
      method: "POST",
      url: "/notify/v2",
      headers: { "content-type": "text/xml", "content-encoding": "gzip" },
      payload: gzipSync(xml),
    });
    expect(response.statusCode).toBe(415);
    expect(response.body).toBe(
      "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[UNSUPPORTED_MEDIA_TYPE: unsupported content type]]></return_msg></xml>",
    );
  });

  it("an empty body is 400 XML_INVALID", async () => {
    const response = await postXml("");
    expect(response.statusCode).toBe(400);
    expect(response.body).toContain("XML_INVALID");
  });

  it.each([
    [
      "billion laughs",
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><xml><sign>&lol2;</sign></xml>',
    ],
    [
      "external entity",
      '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><attach>&xxe;</attach></xml>',
    ],
    ["an entity reference without DOCTYPE", "<xml><attach>&xxe;</attach></xml>"],
  ])("%s is 400 XML_INVALID, never expanded", async (_what, xml) => {
    const response = await postXml(xml);
    expect(response.statusCode).toBe(400);
    expect(response.body).toContain("XML_INVALID");
  });

  it.each(["sign", "total_fee", "mch_id", "transaction_id"])(
    "a signed notification with a second <%s> is 400 XML_INVALID (the signed value and the applied one cannot differ)",
    async (name) => {
      const fields = paymentFields();
      const genuine = buildV2Xml(fields);
      const other = name === "sign" ? "0".repeat(32) : "999999";
      for (const xml of [
        genuine.replace("</xml>", `<${name}>${other}</${name}></xml>`),
        genuine.replace("<xml>", `<xml><${name}>${other}</${name}>`),
      ]) {
        const response = await postXml(xml);
        expect(response.statusCode).toBe(400);
        expect(response.body).toContain("XML_INVALID");
      }
    },
  );
});
