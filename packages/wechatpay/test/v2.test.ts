import { describe, expect, it } from "vitest";
import {
  buildV2Xml,
  cdata,
  DEFAULT_V2_MAX_BYTES,
  DEFAULT_V2_MAX_ELEMENTS,
  decodeXmlText,
  decryptV2ReqInfo,
  encryptAes256Ecb,
  encryptV2ReqInfo,
  openV2PaymentNotification,
  openV2RefundNotification,
  parseV2Xml,
  signV2,
  V2_REPLY_CONTENT_TYPE,
  V2_REPLY_STATUS,
  type V2SignType,
  v2RefundKey,
  v2Reply,
  v2SignString,
  verifyV2,
  verifyV2WithKeyOrPrevious,
} from "../src/index.ts";
import { codeOf } from "./support/keys.ts";
import { vectors } from "./support/vectors.ts";

const KEY = vectors.V8.key;

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return `${(e as { code: string }).code}: ${(e as Error).message}`;
  }
  throw new Error("expected a throw");
}

describe("parseV2Xml: values", () => {
  it("returns flat string fields: CDATA verbatim, bare text entity-decoded, leading zeros kept", () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<xml>
  <return_code><![CDATA[SUCCESS]]></return_code>
  <total_fee>00123</total_fee>
  <attach><![CDATA[a&b <c> ]]]]><![CDATA[>]]></attach>
  <note>x &lt;&gt;&amp;&quot;&apos; &#20320;&#x597D; y</note>
  <spaced>  kept  </spaced>
  <mixed>12<!-- comment -->3<![CDATA[4]]></mixed>
  <empty></empty>
  <selfclosed/>
  <with_attr id="1">v</with_attr>
</xml>`;
    expect(parseV2Xml(xml)).toEqual({
      return_code: "SUCCESS",
      total_fee: "00123",
      attach: "a&b <c> ]]>",
      note: "x <>&\"' 你好 y",
      spaced: "  kept  ",
      mixed: "1234",
      empty: "",
      selfclosed: "",
      with_attr: "v",
    });
  });

  it("line ends read as LF, in text and CDATA alike (XML 1.0 §2.11); &#13; stays a CR", () => {
    expect(parseV2Xml("<xml>\r\n<a>1\r\n2\r3</a>\r<b><![CDATA[4\r\n5]]>&#13;</b></xml>")).toEqual({
      a: "1\n2\n3",
      b: "4\n5\r",
    });
  });

  it("accepts a UTF-8 BOM and Buffer input; a CDATA section may mention <!DOCTYPE", () => {
    expect(parseV2Xml(Buffer.from("\ufeff<xml><a>1</a></xml>", "utf8"))).toEqual({ a: "1" });
    expect(parseV2Xml("<xml><a><![CDATA[<!DOCTYPE x>]]></a><!-- <!ENTITY y> --></xml>")).toEqual({ a: "<!DOCTYPE x>" });
  });

  it("element names that shadow Object.prototype members are refused, never renamed", () => {
    for (const name of ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf"]) {
      expect(codeOf(() => parseV2Xml(`<xml><${name}>x</${name}></xml>`))).toBe("XML_INVALID");
    }
    expect(messageOf(() => parseV2Xml("<xml><toString>x</toString></xml>"))).toMatch(
      /element name <toString> is not allowed/,
    );
    const fields = parseV2Xml("<xml><to_string>y</to_string></xml>");
    expect(Object.getPrototypeOf(fields)).toBe(Object.prototype);
    expect(fields).toEqual({ to_string: "y" });
  });
});

describe("parseV2Xml: hostile and broken input", () => {
  const bomb = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><return_code>&lol9;</return_code></xml>`;

  it("entity bomb: rejected at the DOCTYPE, before any expansion", () => {
    expect(messageOf(() => parseV2Xml(bomb))).toBe(
      "XML_INVALID: <!DOCTYPE> is not allowed (no DTD, no entity declarations)",
    );
  });

  it("XXE and any other declaration are rejected; so is a lower-case doctype", () => {
    const xxe = '<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><a>&xxe;</a></xml>';
    expect(codeOf(() => parseV2Xml(xxe))).toBe("XML_INVALID");
    expect(codeOf(() => parseV2Xml("<!doctype xml><xml><a>1</a></xml>"))).toBe("XML_INVALID");
    expect(codeOf(() => parseV2Xml('<xml><!ENTITY a "b"><a>1</a></xml>'))).toBe("XML_INVALID");
    expect(messageOf(() => parseV2Xml("<xml><!-- x --><! ><a>1</a></xml>"))).toMatch(/<!declaration>/);
  });

  it("a processing instruction cannot hide a DOCTYPE (its `<![CDATA[` is text, not a section start)", () => {
    const hidden = '<?pi <![CDATA[ ?><!DOCTYPE xml [<!ENTITY e "x">]><xml><a>1</a></xml>';
    expect(messageOf(() => parseV2Xml(hidden))).toBe(
      "XML_INVALID: <!DOCTYPE> is not allowed (no DTD, no entity declarations)",
    );
    const spanning = '<?pi <![CDATA[ ?><!DOCTYPE xml [<!ENTITY e "x">]><xml><a><![CDATA[1]]></a></xml>';
    expect(codeOf(() => parseV2Xml(spanning))).toBe("XML_INVALID");
    expect(parseV2Xml("<?pi <!DOCTYPE-like text ?><xml><a>1</a></xml>")).toEqual({ a: "1" });
  });

  it("decodeXmlText on its own: predefined entities and char refs only", () => {
    expect(decodeXmlText("a &amp;&lt;&#65;&#x42; b")).toBe("a &<AB b");
    expect(decodeXmlText("no entities")).toBe("no entities");
    expect(messageOf(() => decodeXmlText("a & b"))).toMatch(/bare "&"/);
    expect(messageOf(() => decodeXmlText("&amp"))).toMatch(/bare "&"/);
    expect(messageOf(() => decodeXmlText("&nbsp;"))).toMatch(/undeclared entity &nbsp;/);
  });

  it("unterminated CDATA sections and comments are not well-formed", () => {
    expect(codeOf(() => parseV2Xml("<xml><a><![CDATA[x</a></xml>"))).toBe("XML_INVALID");
    expect(codeOf(() => parseV2Xml("<xml><a>1</a><!-- x </xml>"))).toBe("XML_INVALID");
  });

  it("undeclared entities, bare ampersands and invalid character references are rejected", () => {
    expect(messageOf(() => parseV2Xml("<xml><a>&lol;</a></xml>"))).toMatch(/undeclared entity &lol;/);
    expect(codeOf(() => parseV2Xml("<xml><a>a & b</a></xml>"))).toBe("XML_INVALID");
    expect(codeOf(() => parseV2Xml("<xml><a>&#0;</a></xml>"))).toBe("XML_INVALID");
    expect(codeOf(() => parseV2Xml("<xml><a>&#xD800;</a></xml>"))).toBe("XML_INVALID");
    expect(codeOf(() => parseV2Xml("<xml><a>&#x110000;</a></xml>"))).toBe("XML_INVALID");
  });

  it("duplicate fields are rejected, not merged or overwritten", () => {
    const dup = "<xml><total_fee>1</total_fee><total_fee>100000</total_fee></xml>";
    expect(messageOf(() => parseV2Xml(dup))).toBe("XML_INVALID: field <total_fee> appears more than once");
  });

  it("10 MB body: XML_TOO_LARGE from the byte count alone; limit configurable, counted in bytes", () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 0x20);
    expect(codeOf(() => parseV2Xml(big))).toBe("XML_TOO_LARGE");
    const xml = "<xml><a>你好</a></xml>"; // 24 bytes, 20 characters
    expect([Buffer.byteLength(xml), xml.length]).toEqual([24, 20]);
    expect(codeOf(() => parseV2Xml(xml, { maxBytes: 23 }))).toBe("XML_TOO_LARGE");
    expect(parseV2Xml(xml, { maxBytes: 24 })).toEqual({ a: "你好" });
  });

  it("nested fields are rejected at their first child element, however deep the nesting", () => {
    const deep = `<xml>${"<a>".repeat(20)}x${"</a>".repeat(20)}</xml>`;
    expect(messageOf(() => parseV2Xml(deep))).toBe("XML_INVALID: <a> contains the element <a>: APIv2 fields are flat");
    expect(messageOf(() => parseV2Xml("<xml><a><b>1</b></a></xml>"))).toBe(
      "XML_INVALID: <a> contains the element <b>: APIv2 fields are flat",
    );
  });

  it("characters XML 1.0 does not allow (C0 controls but tab, LF, CR; U+FFFE, U+FFFF) are refused wherever they are", () => {
    // Anywhere in the document, signed field or not: a NUL in a comment, outside what a sign covers, would otherwise
    // reach Redis with the accepted notification and then fail PostgreSQL's text columns (22P05) at the worker.
    const places = [
      (c: string) => `<xml><a>x${c}y</a></xml>`,
      (c: string) => `<xml><a><![CDATA[x${c}y]]></a></xml>`,
      (c: string) => `<xml><!--${c}--><a>1</a></xml>`,
      (c: string) => `<xml><a>1</a><?pi ${c}?></xml>`,
      (c: string) => `<xml b="${c}"><a>1</a></xml>`,
    ];
    for (const c of ["\u0000", "\u0001", "\u0008", "\u000b", "\u000c", "\u001f", "\ufffe", "\uffff"]) {
      for (const place of places) {
        for (const input of [place(c), Buffer.from(place(c), "utf8")]) {
          expect(messageOf(() => parseV2Xml(input))).toMatch(
            /^XML_INVALID: character U\+[0-9A-F]{4} at character \d+ is not allowed in XML$/,
          );
        }
      }
    }
    expect(messageOf(() => parseV2Xml("<xml><a>1\u0000</a></xml>"))).toBe(
      "XML_INVALID: character U+0000 at character 9 is not allowed in XML",
    );
    // Between fields too, where String#trim (which the scan reads stray text with) drops U+000B and U+000C.
    expect(messageOf(() => parseV2Xml("<xml><a>1</a>\u000b<b>2</b></xml>"))).toBe(
      "XML_INVALID: character U+000B at character 13 is not allowed in XML",
    );
    // What XML allows stays allowed, as a character reference too.
    expect(parseV2Xml("<xml><a>\t\n\u0020\ud7ff\ue000\ufffd\u{10000}\u{10ffff}&#x1F600;</a></xml>")).toEqual({
      a: "\t\n\u0020\ud7ff\ue000\ufffd\u{10000}\u{10ffff}\u{1f600}",
    });
  });

  it("empty, not XML, not well-formed, wrong or several roots, stray text, invalid UTF-8", () => {
    const cases: Array<[string | Buffer, RegExp]> = [
      ["", /empty/],
      ["   \n", /empty/],
      [Buffer.alloc(0), /empty/],
      ["success", /not well-formed/],
      ["<xml><a>1</b></xml>", /not well-formed/],
      ["<xml><a>1</a>", /not well-formed/],
      ["<xml><a>1</a></xml><xml></xml>", /not well-formed/],
      ["<xml/>x", /not well-formed: text after the root element/],
      ['<xml><a>1</a></xml><?xml version="1.0"?>', /XML declaration is allowed only at the start/],
      ['<xml><a b="<">1</a></xml>', /not well-formed: "<" in attribute b/],
      ['<xml><a b="1" b="2">1</a></xml>', /attribute b repeated/],
      ["<root><a>1</a></root>", /expected root element <xml>, got <root>/],
      ["<xml>text<a>1</a></xml>", /text outside of any field/],
      ["<xml><![CDATA[x]]><a>1</a></xml>", /text outside of any field/],
      ["<![CDATA[x]]><xml><a>1</a></xml>", /expected a single <xml> element and nothing else/],
      [Buffer.from([0x3c, 0x78, 0x6d, 0x6c, 0x3e, 0xff, 0x3c, 0x2f, 0x78, 0x6d, 0x6c, 0x3e]), /not valid UTF-8/],
      [42 as unknown as string, /string or a Buffer/],
    ];
    for (const [input, message] of cases) {
      const got = messageOf(() => parseV2Xml(input));
      expect(got.startsWith("XML_INVALID: ")).toBe(true);
      expect(got).toMatch(message);
    }
  });
});

describe("parseV2Xml: element cap (junk costs no more than a genuine notification)", () => {
  /** `<xml>`, then as many `unit(i)` as fit, then `tail`: a body just under the 64 KiB the ingress accepts. */
  function fill(unit: (i: number) => string, tail = "</xml>"): string {
    const parts = ["<xml>"];
    let size = "<xml>".length + tail.length;
    for (let i = 0; size + unit(i).length <= DEFAULT_V2_MAX_BYTES; i++) {
      parts.push(unit(i));
      size += unit(i).length;
    }
    return parts.join("") + tail;
  }

  it("the cap is 256 elements, root included: room for every documented field of a payment notification and 70 coupons", () => {
    expect(DEFAULT_V2_MAX_ELEMENTS).toBe(256);
    // docs/wechatpay-protocol.md §2.1: 2 fields always, 24 more on success, 4 for partners, 3 WxJava also maps.
    const named = [
      ...["return_code", "return_msg", "appid", "mch_id", "device_info", "nonce_str", "sign", "sign_type"],
      ...["result_code", "err_code", "err_code_des", "openid", "is_subscribe", "trade_type", "bank_type"],
      ...["total_fee", "settlement_total_fee", "fee_type", "cash_fee", "cash_fee_type", "coupon_fee"],
      ...["coupon_count", "transaction_id", "out_trade_no", "attach", "time_end"],
      ...["sub_appid", "sub_mch_id", "sub_openid", "sub_is_subscribe", "version", "promotion_detail", "rate_value"],
    ];
    // Three fields per coupon ($n = 0, 1, …).
    const coupons = Array.from({ length: 70 }, (_, n) => [`coupon_type_${n}`, `coupon_id_${n}`, `coupon_fee_${n}`]);
    const fields = Object.fromEntries([...named, ...coupons.flat()].map((name) => [name, "1"]));
    expect(Object.keys(fields)).toHaveLength(243);
    expect(parseV2Xml(buildV2Xml(fields))).toEqual(fields);
  });

  it("256 elements parse; the 257th start tag is refused (XML_INVALID); the cap is configurable", () => {
    const fields = Object.fromEntries(Array.from({ length: 255 }, (_, i) => [`f${i}`, "1"]));
    expect(parseV2Xml(buildV2Xml(fields))).toEqual(fields);
    expect(messageOf(() => parseV2Xml(buildV2Xml({ ...fields, f255: "1" })))).toMatch(
      /^XML_INVALID: more than 256 elements/,
    );
    expect(parseV2Xml("<xml><a>1</a></xml>", { maxElements: 2 })).toEqual({ a: "1" });
    expect(codeOf(() => parseV2Xml("<xml><a>1</a></xml>", { maxElements: 1 }))).toBe("XML_INVALID");
  });

  it("64 KiB of distinct fields is refused at the cap, not parsed into thousands of fields", () => {
    const body = fill((i) => `<f${i}>1</f${i}>`);
    expect(messageOf(() => parseV2Xml(body))).toMatch(/^XML_INVALID: more than 256 elements/);
    // Nothing after the 257th start tag is read: a declaration there changes nothing.
    expect(messageOf(() => parseV2Xml(fill((i) => `<f${i}>1</f${i}>`, "<!DOCTYPE x></xml>")))).toBe(
      messageOf(() => parseV2Xml(body)),
    );
  });

  it("64 KiB of duplicate empty fields is refused at the second one, before the rest is read", () => {
    const body = fill(() => "<a></a>");
    expect(messageOf(() => parseV2Xml(body))).toBe("XML_INVALID: field <a> appears more than once");
    // The tail is never looked at: an unterminated CDATA section or a declaration there changes nothing.
    for (const tail of ["<![CDATA[", "<!DOCTYPE x>", "</xml><xml>"]) {
      expect(messageOf(() => parseV2Xml(fill(() => "<a></a>", tail)))).toBe(
        "XML_INVALID: field <a> appears more than once",
      );
    }
  });

  it("attributes are ignored; more than 32 in a document are refused (WeChat sends none)", () => {
    const attributes = (n: number) => Array.from({ length: n }, (_, i) => ` a${i}="1"`).join("");
    expect(parseV2Xml(`<xml${attributes(16)}><b${attributes(16)}>1</b></xml>`)).toEqual({ b: "1" });
    expect(messageOf(() => parseV2Xml(`<xml${attributes(16)}><b${attributes(17)}>1</b></xml>`))).toBe(
      "XML_INVALID: more than 32 attributes: APIv2 notifications carry none",
    );
    expect(messageOf(() => parseV2Xml(fill((i) => ` a${i}="1"`, "/></xml>").replace("<xml>", "<xml><b")))).toBe(
      "XML_INVALID: more than 32 attributes: APIv2 notifications carry none",
    );
  });

  it("64 KiB of nesting is refused at the first nested element, not parsed to its depth", () => {
    expect(messageOf(() => parseV2Xml(fill(() => "<b>", "")))).toBe(
      "XML_INVALID: <b> contains the element <b>: APIv2 fields are flat",
    );
  });
});

describe("buildV2Xml / cdata", () => {
  it("round-trips any value, including ]]> and Chinese text; keeps insertion order", () => {
    const fields = { return_code: "SUCCESS", attach: "x]]>y]]>", body: "腾讯充值中心-QQ会员充值", total_fee: "0001" };
    const xml = buildV2Xml(fields);
    expect(xml.startsWith("<xml><return_code><![CDATA[SUCCESS]]></return_code><attach>")).toBe(true);
    expect(parseV2Xml(xml)).toEqual(fields);
    expect(cdata("a]]>b")).toBe("<![CDATA[a]]]]><![CDATA[>b]]>");
  });
  it("refuses names that are not XML names", () => {
    expect(() => buildV2Xml({ "a b": "1" })).toThrow(RangeError);
    expect(() => buildV2Xml({ "1a": "1" })).toThrow(RangeError);
  });
});

describe("signV2 / verifyV2", () => {
  const params = {
    appid: "wxd930ea5d5a258f4f",
    mch_id: "10000100",
    body: "test",
    device_info: "1000",
    nonce_str: "ibuaiVcKdpRxkhJA",
  };

  it("drops sign and empty values, sorts by byte order, keeps values raw", () => {
    expect(v2SignString({ b: "2", a: "1", sign: "X", empty: "", Z: "upper", _u: "u" }, "k")).toBe(
      "Z=upper&_u=u&a=1&b=2&key=k",
    );
    expect(v2SignString({ a: " spaced & raw=1 " }, "k")).toBe("a= spaced & raw=1 &key=k");
    expect(signV2({ ...params, sign: "ignored", empty: "" }, KEY, "MD5")).toBe(vectors.V8.md5);
  });

  it("rejects missing/blank sign, unknown sign types, empty keys", () => {
    expect(messageOf(() => verifyV2(params, KEY))).toBe("V2_SIGN_INVALID: the v2 message has no sign field");
    expect(codeOf(() => verifyV2({ ...params, sign: "  " }, KEY))).toBe("V2_SIGN_INVALID");
    expect(codeOf(() => verifyV2({ ...params, sign: "ABC" }, KEY))).toBe("V2_SIGN_INVALID");
    expect(codeOf(() => signV2(params, KEY, "SHA1" as V2SignType))).toBe("V2_SIGN_INVALID");
    expect(codeOf(() => signV2(params, "", "MD5"))).toBe("KEY_INVALID");
    expect(codeOf(() => verifyV2({ ...params, sign: vectors.V8.md5 }, ""))).toBe("KEY_INVALID");
  });

  it("accepts either algorithm whatever sign_type claims", () => {
    const claimsHmac = { ...params, sign_type: "HMAC-SHA256" };
    expect(verifyV2({ ...claimsHmac, sign: signV2(claimsHmac, KEY, "MD5") }, KEY)).toBe("MD5");
    expect(verifyV2({ ...claimsHmac, sign: signV2(claimsHmac, KEY, "HMAC-SHA256") }, KEY)).toBe("HMAC-SHA256");
  });

  it("verifyV2WithKeyOrPrevious: the current key, then the previous one when configured", () => {
    const previous = "p".repeat(32);
    const signedBefore = { ...params, sign: signV2(params, previous, "MD5") };
    expect(verifyV2WithKeyOrPrevious({ ...params, sign: signV2(params, KEY, "MD5") }, KEY, previous)).toBe("MD5");
    expect(verifyV2WithKeyOrPrevious(signedBefore, KEY, previous)).toBe("MD5");
    expect(codeOf(() => verifyV2WithKeyOrPrevious(signedBefore, KEY, null))).toBe("V2_SIGN_INVALID");
    expect(codeOf(() => verifyV2WithKeyOrPrevious(signedBefore, KEY, "q".repeat(32)))).toBe("V2_SIGN_INVALID");
    // Only a sign mismatch falls back: a missing key is a configuration error.
    expect(codeOf(() => verifyV2WithKeyOrPrevious(signedBefore, "", previous))).toBe("KEY_INVALID");
  });

  it("openV2PaymentNotification parses and verifies", () => {
    const fields = { return_code: "SUCCESS", result_code: "SUCCESS", out_trade_no: "1409811653", total_fee: "1" };
    const body = buildV2Xml({ ...fields, sign: signV2(fields, KEY, "HMAC-SHA256") });
    expect(openV2PaymentNotification(Buffer.from(body), KEY)).toEqual({
      fields: { ...fields, sign: signV2(fields, KEY, "HMAC-SHA256") },
      signType: "HMAC-SHA256",
    });
    expect(codeOf(() => openV2PaymentNotification(body.replace("1409811653", "1409811654"), KEY))).toBe(
      "V2_SIGN_INVALID",
    );
    expect(codeOf(() => openV2PaymentNotification(buildV2Xml({ return_code: "FAIL", return_msg: "x" }), KEY))).toBe(
      "V2_SIGN_INVALID",
    );
  });
});

describe("refund notifications (req_info)", () => {
  const v = vectors.V12;
  const outer = {
    return_code: "SUCCESS",
    appid: "wx2421b1c4370ec43b",
    mch_id: "10000100",
    nonce_str: "TeqClE3i0mvn3DrK",
  };

  it("openV2RefundNotification decrypts the real vector inside a notification", () => {
    const body = buildV2Xml({ ...outer, req_info: v.req_info });
    const opened = openV2RefundNotification(body, v.api_key);
    expect(opened.outer.mch_id).toBe("10000100");
    expect(opened.refund).toEqual(v.expected_fields);
  });

  it("round-trips simulator-made req_info, and fails without req_info or with the wrong key", () => {
    const fields = {
      out_refund_no: "R1",
      refund_status: "CHANGE",
      refund_recv_accout: "支付用户零钱",
      refund_fee: "00100",
    };
    const reqInfo = encryptV2ReqInfo(fields, KEY);
    expect(decryptV2ReqInfo(reqInfo, KEY)).toEqual(fields);
    expect(openV2RefundNotification(buildV2Xml({ ...outer, req_info: reqInfo }), KEY).refund).toEqual(fields);
    expect(messageOf(() => openV2RefundNotification(buildV2Xml(outer), KEY))).toMatch(
      /^XML_INVALID: refund notification has no req_info \(return_code=SUCCESS\)/,
    );
    expect(messageOf(() => openV2RefundNotification("<xml><req_info></req_info></xml>", KEY))).toMatch(
      /return_code=\?/,
    );
    expect(codeOf(() => decryptV2ReqInfo(reqInfo, `${KEY}0`))).toBe("DECRYPT_FAILED");
    expect(codeOf(() => decryptV2ReqInfo(reqInfo, ""))).toBe("KEY_INVALID");
  });

  it("a well-padded plaintext that is not a <root> document is DECRYPT_FAILED (ECB has no tag)", () => {
    const notXml = encryptAes256Ecb(Buffer.from("hello"), v2RefundKey(KEY));
    const wrongRoot = encryptAes256Ecb("<xml><a>1</a></xml>", v2RefundKey(KEY));
    expect(codeOf(() => decryptV2ReqInfo(notXml, KEY))).toBe("DECRYPT_FAILED");
    expect(codeOf(() => decryptV2ReqInfo(wrongRoot, KEY))).toBe("DECRYPT_FAILED");
  });
});

describe("v2Reply", () => {
  it("success is exactly WeChat's string", () => {
    expect(v2Reply(true)).toBe(
      "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>",
    );
    expect(V2_REPLY_STATUS).toBe(200);
    expect(V2_REPLY_CONTENT_TYPE).toMatch(/^text\/xml/);
  });
  it("failure carries the reason safely, and parses back", () => {
    expect(v2Reply(false, "签名失败")).toBe(
      "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名失败]]></return_msg></xml>",
    );
    expect(parseV2Xml(v2Reply(false, "a]]>b"))).toEqual({ return_code: "FAIL", return_msg: "a]]>b" });
    expect(parseV2Xml(v2Reply(false, " "))).toEqual({ return_code: "FAIL", return_msg: "FAIL" });
  });
});
