import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildV2Xml,
  buildV3Message,
  decryptAeadAes256Gcm,
  decryptV2ReqInfo,
  encryptAeadAes256Gcm,
  encryptAes256Ecb,
  KeyStore,
  openV3Notification,
  parseV2Xml,
  readV3Headers,
  signV2,
  signV3Message,
  type V3Headers,
  v2RefundKey,
  verifyV2,
  verifyV3,
  verifyV3Async,
  WechatPayError,
} from "../src/index.ts";
import { rsaKeyPair, TEST_APIV3_KEY } from "./support/keys.ts";

/**
 * Property tests. The signature must cover every byte of timestamp, nonce and body: any single-byte
 * substitution anywhere fails, and honest round trips always pass, for arbitrary (incl. multi-byte UTF-8
 * and non-UTF-8) bodies. RSA signing costs ~1 ms, so runs are kept in the low hundreds.
 */

const platform = rsaKeyPair();
const PUB = "PUB_KEY_ID_0000000000000024101100397200000006";
const keys = new KeyStore();
keys.addPublicKey(PUB, platform.publicKey);
const NOW = new Date("2025-01-01T00:00:00Z");
// Wide tolerance so a mutated (still decimal) timestamp reaches the signature check instead of TIMESTAMP_SKEW.
const opts = { keys, now: NOW, toleranceSeconds: 1e11 };

const timestampArb = fc.integer({ min: 1_000_000_000, max: 4_000_000_000 }).map(String);
const nonceArb = fc.string({
  unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
  minLength: 1,
  maxLength: 40,
});
const bodyArb = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 200 }).map((s) => Buffer.from(s, "utf8")), // multi-byte UTF-8 (CJK, emoji)
  fc.string({ unit: "binary", maxLength: 200 }).map((s) => Buffer.from(s, "utf8")),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), // arbitrary bytes, not even UTF-8
);

function sign(timestamp: string, nonce: string, body: Buffer): V3Headers {
  return {
    timestamp,
    nonce,
    signature: signV3Message(buildV3Message(timestamp, nonce, body), platform.privateKey),
    serial: PUB,
    signatureType: "WECHATPAY2-SHA256-RSA2048",
  };
}

function failureCode(fn: () => void): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WechatPayError);
    return (e as WechatPayError).code;
  }
  return undefined;
}

/** Replaces the character at `index` by a different printable ASCII character. */
function substitute(text: string, index: number, delta: number): string {
  const i = index % text.length;
  const code = text.charCodeAt(i);
  const replacement = 0x21 + ((code - 0x21 + 1 + (delta % 93)) % 94);
  return text.slice(0, i) + String.fromCharCode(replacement) + text.slice(i + 1);
}

describe("APIv3 signature properties", () => {
  it("sign-then-verify round-trips for any body (sync and async)", async () => {
    await fc.assert(
      fc.asyncProperty(timestampArb, nonceArb, bodyArb, async (ts, nonce, body) => {
        const headers = sign(ts, nonce, body);
        verifyV3(headers, body, opts);
        await verifyV3Async(headers, body, opts);
      }),
      { numRuns: 150 },
    );
  });

  it("any single-byte change of the body fails", () => {
    fc.assert(
      fc.property(
        timestampArb,
        nonceArb,
        bodyArb.filter((b) => b.length > 0),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (ts, nonce, body, at, xor) => {
          const headers = sign(ts, nonce, body);
          const changed = Buffer.from(body);
          const i = at % changed.length;
          changed[i] = (changed[i] ?? 0) ^ xor;
          expect(failureCode(() => verifyV3(headers, changed, opts))).toBe("SIGNATURE_INVALID");
        },
      ),
      { numRuns: 150 },
    );
  });

  it("any single-byte change of the nonce fails", () => {
    fc.assert(
      fc.property(timestampArb, nonceArb, bodyArb, fc.nat(), fc.nat(), (ts, nonce, body, at, delta) => {
        const headers = sign(ts, nonce, body);
        const changed = substitute(nonce, at, delta);
        expect(changed).not.toBe(nonce);
        expect(failureCode(() => verifyV3({ ...headers, nonce: changed }, body, opts))).toBe("SIGNATURE_INVALID");
      }),
      { numRuns: 150 },
    );
  });

  it("any single-byte change of the timestamp fails (a digit → SIGNATURE_INVALID, anything else → HEADER_INVALID)", () => {
    fc.assert(
      fc.property(timestampArb, nonceArb, bodyArb, fc.nat(), fc.nat(), (ts, nonce, body, at, delta) => {
        const headers = sign(ts, nonce, body);
        const changed = substitute(ts, at, delta);
        expect(changed).not.toBe(ts);
        const code = failureCode(() => verifyV3({ ...headers, timestamp: changed }, body, opts));
        expect(code).toBe(/^[0-9]+$/.test(changed) ? "SIGNATURE_INVALID" : "HEADER_INVALID");
      }),
      { numRuns: 200 },
    );
  });
});

describe("AEAD and APIv2 round trips", () => {
  it("AES-256-GCM: decrypt(encrypt(x)) = x for any bytes, nonce and AAD", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 500 }),
        fc.string({ minLength: 1, maxLength: 16 }),
        fc.string({ maxLength: 40 }),
        (data, nonce, aad) => {
          const ciphertext = encryptAeadAes256Gcm({
            key: TEST_APIV3_KEY,
            nonce,
            associatedData: aad,
            plaintext: Buffer.from(data),
          });
          expect(
            decryptAeadAes256Gcm({ key: TEST_APIV3_KEY, nonce, associatedData: aad, ciphertext }).equals(
              Buffer.from(data),
            ),
          ).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  const fieldName = fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/).filter((n) => n !== "sign");
  // Any text XML can carry (no control characters other than tab/newline; \r would be normalised by XML).
  const isXmlTextChar = (ch: string): boolean => {
    const c = ch.codePointAt(0) ?? 0;
    return c === 0x9 || c === 0xa || (c >= 0x20 && c !== 0xfffe && c !== 0xffff);
  };
  const xmlText = fc
    .string({ unit: "grapheme", maxLength: 40 })
    .map((s) => Array.from(s).filter(isXmlTextChar).join(""));

  it("v2: build XML → parse → verify round-trips for random fields, with both algorithms", () => {
    fc.assert(
      fc.property(
        fc.dictionary(fieldName, xmlText, { minKeys: 1, maxKeys: 12 }),
        fc.constantFrom("MD5" as const, "HMAC-SHA256" as const),
        (fields, type) => {
          const sign = signV2(fields, "192006250b4c09247ec02edce69f6a2d", type);
          const parsed = parseV2Xml(buildV2Xml({ ...fields, sign }));
          expect(parsed).toEqual({ ...fields, sign });
          expect(verifyV2(parsed, "192006250b4c09247ec02edce69f6a2d")).toBe(type);
        },
      ),
      { numRuns: 200 },
    );
  });

  // What a hostile body may hold between start tags: fields (empty, self-closed, with attributes, entities or
  // CDATA, after whitespace, comments or processing instructions), each with one start tag and a name of its own —
  // and, in about half of the bodies, a repeated (f0 again) or a nested field.
  // (`@` stands for the field's name.)
  const junkElement = fc.oneof(
    {
      weight: 400,
      arbitrary: fc.constantFrom(
        "<@>1</@>",
        "<@/>",
        "<@ c=\"1\" d='2'/>",
        "<@>&amp;&#x597D;</@>",
        "<@><![CDATA[<]]></@>",
        "\n  <@>x</@>",
        "<!-- c --><@/>",
        "<?pi x?><@/>",
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom("<f0></f0>", "<@><l/></@>") },
  );
  // What may follow: anything, in particular whatever would end the document, make it malformed or declare things.
  const anyTail = fc
    .array(
      fc.oneof(
        fc.constantFrom("</z>", "</xml>", "<xml>", "<y>", "</y>", "<![CDATA[", "]]>", "<!-- ", " -->", "<?pi ", "?>"),
        fc.constantFrom("<!DOCTYPE x [<!ENTITY e 'e'>]>", "&e;", "&amp;", "&", "<f1>2</f1>", "<z/>"),
        fc.string({ unit: "binary", maxLength: 20 }),
      ),
      { maxLength: 8 },
    )
    .map((pieces) => pieces.join(""));

  it("v2 XML: past the element cap nothing more is read — whatever follows, the answer is the same", () => {
    fc.assert(
      fc.property(
        fc.array(junkElement, { minLength: 256, maxLength: 256 }),
        anyTail,
        anyTail,
        (elements, tail1, tail2) => {
          // <xml> and 256 junk elements: the 257th start tag is the last thing the parser may look at.
          const head = `<xml>${elements.map((element, i) => element.replaceAll("@", `f${i}`)).join("")}<z>`;
          const answer = (tail: string) => {
            try {
              return JSON.stringify(parseV2Xml(head + tail));
            } catch (e) {
              return `${(e as WechatPayError).code}: ${(e as Error).message}`;
            }
          };
          const first = answer(tail1);
          expect(first).toMatch(/^XML_INVALID: /);
          expect(answer(tail2)).toBe(first);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("hostile input fails closed, with the package's own error codes", () => {
  const V2_KEY = "192006250b4c09247ec02edce69f6a2d";
  const pieces = fc.constantFrom(
    "<xml>",
    "</xml>",
    "<sign>",
    "</sign>",
    "<a>",
    "</a>",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?pi ",
    "?>",
    "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
    "&e;",
    "&amp;",
    "&#x41;",
    "&",
    "<b/>",
    "\r\n",
    "中",
  );
  const hostileXml = fc.array(fc.oneof(pieces, fc.string({ unit: "binary", maxLength: 10 })), { maxLength: 30 });

  it("v2 XML, as text or bytes (invalid UTF-8 included): parsed, or XML_INVALID / XML_TOO_LARGE — never anything else", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          hostileXml.map((p) => Buffer.from(p.join(""))),
          fc.uint8Array({ maxLength: 200 }),
        ),
        (b) => {
          const code = failureCode(() => parseV2Xml(Buffer.from(b), { maxBytes: 150 }));
          expect([undefined, "XML_INVALID", "XML_TOO_LARGE"]).toContain(code);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("v3 headers in any spelling, repeated or not: one trimmed value per header, or HEADER_MISSING / HEADER_INVALID", () => {
    const spellings = fc.constantFrom(
      "Wechatpay-Timestamp",
      "wechatpay-timestamp",
      "WECHATPAY-TIMESTAMP",
      "Wechatpay-Nonce",
      "Wechatpay-Signature",
      "wechatpay-signature",
      "Wechatpay-Serial",
      "Wechatpay-Signature-Type",
      "Request-ID",
      "__proto__",
    );
    const value = fc.string({ unit: fc.constantFrom("a", "B", "1", " ", "\t", "="), maxLength: 4 });
    fc.assert(
      fc.property(
        fc.dictionary(spellings, fc.oneof(value, fc.array(value, { maxLength: 3 }), fc.constant(undefined))),
        (raw) => {
          const distinct = (name: string) => {
            const values = Object.entries(raw)
              .filter(([key]) => key.toLowerCase() === name.toLowerCase())
              .flatMap(([, v]) => (v === undefined ? [] : Array.isArray(v) ? v : [v]))
              .map((v) => v.replace(/^[ \t]+|[ \t]+$/g, ""))
              .filter((v) => v !== "");
            return [...new Set(values)];
          };
          let headers: V3Headers | undefined;
          const code = failureCode(() => {
            headers = readV3Headers(raw);
          });
          const signed = ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"];
          const ambiguous = [...signed, "Wechatpay-Signature-Type"].some((name) => distinct(name).length > 1);
          const missing = signed.some((name) => distinct(name).length === 0);
          if (code !== undefined) {
            expect(["HEADER_MISSING", "HEADER_INVALID"]).toContain(code);
            expect(ambiguous || missing).toBe(true);
            return;
          }
          expect(ambiguous || missing).toBe(false);
          const read = headers as V3Headers;
          expect([read.timestamp]).toEqual(distinct("Wechatpay-Timestamp"));
          expect([read.nonce]).toEqual(distinct("Wechatpay-Nonce"));
          expect([read.signature]).toEqual(distinct("Wechatpay-Signature"));
          expect([read.serial]).toEqual(distinct("Wechatpay-Serial"));
          expect(read.signatureType).toBe(distinct("Wechatpay-Signature-Type")[0] ?? "WECHATPAY2-SHA256-RSA2048");
        },
      ),
      {
        numRuns: 2000,
        // Edge values checked on every run: two spellings whose values trim to one, a blank copy of a repeated header,
        // a blank signed header, and an own "__proto__" key (JSON.parse makes it a field, not the prototype).
        examples: [
          [
            {
              "Wechatpay-Timestamp": " 1 ",
              "wechatpay-timestamp": "1\t",
              "Wechatpay-Nonce": "a",
              "Wechatpay-Signature": "B",
              "Wechatpay-Serial": "=",
            },
          ],
          [
            {
              "Wechatpay-Timestamp": ["1", " "],
              "Wechatpay-Nonce": "a",
              "Wechatpay-Signature": "B",
              "Wechatpay-Serial": "=",
            },
          ],
          [
            {
              "Wechatpay-Timestamp": "\t ",
              "Wechatpay-Nonce": "a",
              "Wechatpay-Signature": "B",
              "Wechatpay-Serial": "=",
            },
          ],
          [
            JSON.parse(
              '{"__proto__":"1","Wechatpay-Timestamp":"1","Wechatpay-Nonce":"a","Wechatpay-Signature":"B","Wechatpay-Serial":"="}',
            ),
          ],
        ],
      },
    );
  });

  it("v2 refund req_info that decrypts to anything but a flat <root> document, or is not base64 of blocks, is DECRYPT_FAILED", () => {
    const key = v2RefundKey(V2_KEY);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 120 }).map((bytes) => encryptAes256Ecb(Buffer.from(bytes), key)),
          hostileXml.map((p) => encryptAes256Ecb(p.join(""), key)),
          fc.string({ maxLength: 60 }),
        ),
        (reqInfo) => {
          const code = failureCode(() => decryptV2ReqInfo(reqInfo, V2_KEY));
          expect([undefined, "DECRYPT_FAILED"]).toContain(code);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("v3 resource with any algorithm, nonce, associated data or plaintext: opened, or one of the four documented codes", () => {
    const key = Buffer.from(TEST_APIV3_KEY);
    const text = fc.string({ maxLength: 24 });
    fc.assert(
      fc.property(
        fc.oneof(fc.constant("AEAD_AES_256_GCM"), text),
        text,
        text,
        fc.oneof(
          text,
          fc.json(),
          fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString("latin1")),
        ),
        fc.record({ nonce: fc.boolean(), associatedData: fc.boolean() }),
        (algorithm, nonce, associatedData, plaintext, same) => {
          const ciphertext = encryptAeadAes256Gcm({ key, nonce: nonce || "n", associatedData, plaintext });
          const body = JSON.stringify({
            id: "EV-1",
            create_time: "2025-01-01T00:00:00+08:00",
            event_type: "TRANSACTION.SUCCESS",
            resource_type: "encrypt-resource",
            resource: {
              algorithm,
              ciphertext,
              nonce: same.nonce ? nonce || "n" : `${nonce}x`,
              associated_data: same.associatedData ? associatedData : `${associatedData}x`,
              original_type: "transaction",
            },
          });
          const code = failureCode(() => openV3Notification(body, key));
          expect([
            undefined,
            "ENVELOPE_INVALID",
            "ALGORITHM_UNSUPPORTED",
            "DECRYPT_FAILED",
            "PAYLOAD_INVALID",
          ]).toContain(code);
          // Only the genuine algorithm, nonce and associated data can open it, and only a valid transaction passes.
          if (code === undefined)
            expect(algorithm === "AEAD_AES_256_GCM" && same.nonce && same.associatedData).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("v2 sign: a changed value, a foreign key or a dropped field never verifies, whichever algorithm signed", () => {
    const value = fc.string({ unit: fc.constantFrom(..."abcXYZ019_-中 "), minLength: 1, maxLength: 12 });
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom("appid", "mch_id", "total_fee", "attach", "sign_type", "nonce_str"), value, {
          minKeys: 2,
        }),
        fc.constantFrom("MD5" as const, "HMAC-SHA256" as const),
        fc.nat(),
        (fields, type, pick) => {
          const signed: Record<string, string> = { ...fields, sign: signV2(fields, V2_KEY, type) };
          // Hex case and the `sign` field itself are not covered: a lower-case sign is the same sign.
          expect(verifyV2({ ...signed, sign: String(signed.sign).toLowerCase() }, V2_KEY)).toBe(type);
          const names = Object.keys(fields);
          const name = names[pick % names.length] as string;
          expect(failureCode(() => verifyV2({ ...signed, [name]: `${fields[name]}0` }, V2_KEY))).toBe(
            "V2_SIGN_INVALID",
          );
          const rest = { ...signed };
          delete rest[name];
          expect(failureCode(() => verifyV2(rest, V2_KEY))).toBe("V2_SIGN_INVALID");
          expect(failureCode(() => verifyV2(signed, `${V2_KEY.slice(1)}0`))).toBe("V2_SIGN_INVALID");
        },
      ),
      { numRuns: 300 },
    );
  });

  it("AES-256-GCM: wrong key, nonce or AAD, or any flipped bit of ciphertext or tag, is DECRYPT_FAILED", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.string({ minLength: 1, maxLength: 16 }),
        fc.string({ maxLength: 16 }),
        fc.nat(),
        fc.integer({ min: 0, max: 3 }),
        (plaintext, nonce, associatedData, at, what) => {
          const key = Buffer.from(TEST_APIV3_KEY);
          const ciphertext = encryptAeadAes256Gcm({ key, nonce, associatedData, plaintext: Buffer.from(plaintext) });
          const args = { key, nonce, associatedData, ciphertext };
          const bytes = Buffer.from(ciphertext, "base64");
          bytes[at % bytes.length] = (bytes[at % bytes.length] as number) ^ (1 << (at % 8));
          const wrong = [
            { ...args, key: Buffer.from(`${TEST_APIV3_KEY.slice(1)}!`) },
            { ...args, nonce: `${nonce}x` },
            { ...args, associatedData: `${associatedData}x` },
            { ...args, ciphertext: bytes.toString("base64") },
          ][what];
          expect(failureCode(() => decryptAeadAes256Gcm(wrong as typeof args))).toBe("DECRYPT_FAILED");
        },
      ),
      { numRuns: 300 },
    );
  });
});
