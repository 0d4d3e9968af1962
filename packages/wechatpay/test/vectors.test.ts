import { createDecipheriv, createHash, X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  decryptAeadAes256Gcm,
  decryptAes256Ecb,
  decryptV2ReqInfo,
  encryptAeadAes256Gcm,
  encryptAes256Ecb,
  encryptV2ReqInfo,
  KeyStore,
  loadCertificate,
  loadPublicKey,
  openV3Notification,
  parseV2Xml,
  parseV3Envelope,
  RsaVerifyPool,
  readV3Headers,
  signV2,
  type V3Headers,
  v2RefundKey,
  v2SignString,
  verifyRsaSha256,
  verifyV2,
  verifyV3,
  verifyV3Async,
  verifyV3InPool,
  WechatPayError,
} from "../src/index.ts";
import { asyncCodeOf, codeOf } from "./support/keys.ts";
import { parseSignString, vectors } from "./support/vectors.ts";

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** Node's own AES-GCM with the key size picked from the key length (what wechatpay-go does). */
function rawGcmDecrypt(key: Buffer, nonce: string, aad: string, ciphertextB64: string): Buffer {
  const data = Buffer.from(ciphertextB64, "base64");
  const decipher = createDecipheriv(`aes-${key.length * 8}-gcm` as "aes-128-gcm", key, Buffer.from(nonce));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(data.subarray(-16));
  return Buffer.concat([decipher.update(data.subarray(0, -16)), decipher.final()]);
}

describe("V1 — complete v3 notification (wechatpay-go notify_test.go)", () => {
  const v = vectors.V1;
  const body = Buffer.from(v.body, "utf8");
  const now = new Date(v.now * 1000);
  const store = new KeyStore();
  store.addCertificate(v.certificate);
  const headers: V3Headers = {
    timestamp: v.timestamp,
    nonce: v.nonce,
    signature: v.signature,
    serial: v.serial,
    signatureType: "WECHATPAY2-SHA256-RSA2048",
  };

  it("has the documented body length and message digest", () => {
    expect(body.length).toBe(v.body_len);
    const message = Buffer.concat([Buffer.from(`${v.timestamp}\n${v.nonce}\n`), body, Buffer.from("\n")]);
    expect(sha256(message)).toBe(v.message_sha256);
  });

  it("certificate serial matches the header serial", () => {
    expect(loadCertificate(v.certificate).serial).toBe(v.certificate_serial);
    expect(store.has(v.serial.toLowerCase())).toBe(true);
  });

  it("reads the headers case-insensitively, with the signature type defaulted", () => {
    const raw = {
      [v.header_names.timestamp]: v.timestamp,
      [v.header_names.nonce.toLowerCase()]: v.nonce,
      [v.header_names.serial.toUpperCase()]: v.serial,
      [v.header_names.signature]: ` ${v.signature} `,
    };
    expect(readV3Headers(raw)).toEqual(headers);
  });

  it("verifies over the raw bytes (sync, thread-pool and worker-thread variants)", async () => {
    expect(() => verifyV3(headers, body, { keys: store, now })).not.toThrow();
    await expect(verifyV3Async(headers, body, { keys: store, now })).resolves.toBeUndefined();
    const pool = new RsaVerifyPool();
    try {
      await expect(verifyV3InPool(headers, body, { keys: store, now, pool })).resolves.toBeUndefined();
    } finally {
      await pool.close();
    }
  });

  it("negative: one flipped byte of the body, nonce or timestamp fails", () => {
    for (let i = 0; i < body.length; i += 37) {
      const flipped = Buffer.from(body);
      flipped[i] = (flipped[i] ?? 0) ^ 0x01;
      expect(codeOf(() => verifyV3(headers, flipped, { keys: store, now }))).toBe("SIGNATURE_INVALID");
    }
    const nonce = `${v.nonce.slice(0, -1)}${v.nonce.endsWith("z") ? "y" : "z"}`;
    expect(codeOf(() => verifyV3({ ...headers, nonce }, body, { keys: store, now }))).toBe("SIGNATURE_INVALID");
    const timestamp = String(v.now + 1);
    expect(codeOf(() => verifyV3({ ...headers, timestamp }, body, { keys: store, now }))).toBe("SIGNATURE_INVALID");
  });

  it("negative: a re-serialised body (parsed then stringified) does not verify", () => {
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(v.body), null, 1));
    expect(codeOf(() => verifyV3(headers, reserialised, { keys: store, now }))).toBe("SIGNATURE_INVALID");
  });

  it("negative: wrong serial, stale and future timestamps, probe", () => {
    expect(codeOf(() => verifyV3({ ...headers, serial: "D7CE59D1F522D702" }, body, { keys: store, now }))).toBe(
      "SERIAL_UNKNOWN",
    );
    const at = (deltaSeconds: number) => new Date((v.now + deltaSeconds) * 1000);
    expect(codeOf(() => verifyV3(headers, body, { keys: store, now: at(301) }))).toBe("TIMESTAMP_SKEW");
    expect(codeOf(() => verifyV3(headers, body, { keys: store, now: at(-301) }))).toBe("TIMESTAMP_SKEW");
    expect(codeOf(() => verifyV3(headers, body, { keys: store, now: at(300) }))).toBeUndefined();
    expect(codeOf(() => verifyV3(headers, body, { keys: store, now: at(-300) }))).toBeUndefined();
    const probe = { ...headers, signature: "WECHATPAY/SIGNTEST/tJHIiIS9eB2hAYstmAmbbD3ZE5" };
    expect(codeOf(() => verifyV3(probe, body, { keys: store, now }))).toBe("SIGNATURE_PROBE");
  });

  it("negative: the certificate is refused after notAfter (2031-04-25)", () => {
    const later = new Date("2031-04-26T00:00:00Z");
    expect(codeOf(() => verifyV3(headers, body, { keys: store, now: later, toleranceSeconds: 1e10 }))).toBe(
      "CERTIFICATE_EXPIRED",
    );
  });

  it("envelope parses; decryption is refused: the 16-byte key means AES-128, which APIv3 never uses", () => {
    const envelope = parseV3Envelope(body);
    expect(envelope.event_type).toBe("PAYSCORE.USER_OPEN_SERVICE");
    expect(envelope.summary).toBe("签约成功");
    expect(envelope.resource).toMatchObject({
      algorithm: "AEAD_AES_256_GCM",
      nonce: v.resource_nonce,
      associated_data: v.resource_associated_data,
      original_type: "payscore",
    });
    const key = Buffer.from(v.apiv3_key);
    expect(key.length).toBe(v.apiv3_key_len);
    let error: unknown;
    try {
      openV3Notification(body, key);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(WechatPayError);
    expect((error as WechatPayError).code).toBe("KEY_INVALID");
    expect((error as WechatPayError).message).toMatch(/32 bytes.*got 16 bytes/);
  });

  it("the vector itself is sound: raw aes-128-gcm decrypts the resource to the expected plaintext", () => {
    const { resource } = parseV3Envelope(body);
    const plaintext = rawGcmDecrypt(
      Buffer.from(v.apiv3_key),
      resource.nonce,
      resource.associated_data ?? "",
      resource.ciphertext,
    );
    expect(plaintext.toString("utf8")).toBe(v.expected_plaintext);
  });

  it("negative: the same ciphertext under a 32-byte key fails authentication", () => {
    const key32 = Buffer.from(v.apiv3_key.repeat(2));
    expect(codeOf(() => openV3Notification(body, key32))).toBe("DECRYPT_FAILED");
  });
});

describe("V2 — RSA-SHA256 over 'source' (wechatpay-go verifier tests)", () => {
  const v = vectors.V2;
  const key = loadPublicKey(v.public_key);

  it("verifies with the public key and with the V1 certificate (same RSA key)", () => {
    expect(verifyRsaSha256(v.message, v.signature, key)).toBe(true);
    expect(verifyRsaSha256(v.message, v.signature, loadCertificate(vectors.V1.certificate).publicKey)).toBe(true);
  });

  it("resolves through the key store as a WeChat Pay public key", () => {
    const store = new KeyStore();
    store.addPublicKey("PUB_KEY_ID_0000000000000024101100397200000006", v.public_key);
    const resolved = store.resolve("PUB_KEY_ID_0000000000000024101100397200000006", new Date());
    expect(verifyRsaSha256(v.message, v.signature, resolved)).toBe(true);
  });

  it("negative: 'wrong source' fails", () => {
    for (const negative of v.negative) {
      expect(verifyRsaSha256(negative.message, v.signature, key)).toBe(false);
    }
  });
});

describe("V3 — second RSA key (wechatpay-java RSAVerifierTest)", () => {
  const v = vectors.V3;
  it("verifies with its own key", () => {
    expect(verifyRsaSha256(v.message, v.signature, loadPublicKey(v.public_key))).toBe(true);
  });
  it("negative: does not verify with another key (V2's), nor over another message", () => {
    expect(verifyRsaSha256(v.message, v.signature, loadPublicKey(vectors.V2.public_key))).toBe(false);
    expect(verifyRsaSha256(`${v.message}.`, v.signature, loadPublicKey(v.public_key))).toBe(false);
  });
});

describe("V4 — AES-GCM with a 16-byte key (wechatpay-go aes_test.go)", () => {
  const v = vectors.V4;
  it("is refused by the AES-256-only decryptor with a clear error", () => {
    const call = () =>
      decryptAeadAes256Gcm({
        key: Buffer.from(v.key),
        nonce: v.nonce,
        associatedData: v.associated_data,
        ciphertext: v.ciphertext,
      });
    expect(codeOf(call)).toBe("KEY_INVALID");
    expect(call).toThrow(/must be 32 bytes/);
  });
  it("the vector itself is sound: raw aes-128-gcm gives 'Hello World'; the wrong key fails", () => {
    expect(rawGcmDecrypt(Buffer.from(v.key), v.nonce, v.associated_data, v.ciphertext).toString()).toBe(v.plaintext);
    for (const negative of v.negative) {
      expect(() => rawGcmDecrypt(Buffer.from(negative.key), v.nonce, v.associated_data, v.ciphertext)).toThrow();
    }
  });
});

describe("V5 — AES-256-GCM, 32-byte key (wechatpay-java AeadAesCipherTest)", () => {
  const v = vectors.V5;
  const args = { key: Buffer.from(v.key), nonce: v.nonce, associatedData: v.associated_data, ciphertext: v.ciphertext };

  it("decrypts, and re-encryption reproduces the ciphertext", () => {
    expect(decryptAeadAes256Gcm(args).toString("utf8")).toBe(v.plaintext);
    expect(
      encryptAeadAes256Gcm({
        key: args.key,
        nonce: v.nonce,
        associatedData: v.associated_data,
        plaintext: v.plaintext,
      }),
    ).toBe(v.ciphertext);
  });

  it("negative: wrong AAD and wrong nonce (from the vector)", () => {
    for (const negative of v.negative) {
      const changed = {
        ...args,
        ...(negative.associated_data !== undefined ? { associatedData: negative.associated_data } : {}),
        ...(negative.nonce !== undefined ? { nonce: negative.nonce } : {}),
      };
      expect(codeOf(() => decryptAeadAes256Gcm(changed))).toBe("DECRYPT_FAILED");
    }
  });

  it("negative: wrong key, truncated ciphertext, flipped byte, empty and non-base64 ciphertext", () => {
    expect(codeOf(() => decryptAeadAes256Gcm({ ...args, key: Buffer.from(v.key.replace("a", "b")) }))).toBe(
      "DECRYPT_FAILED",
    );
    const bytes = Buffer.from(v.ciphertext, "base64");
    const truncated = bytes.subarray(0, bytes.length - 1).toString("base64");
    expect(codeOf(() => decryptAeadAes256Gcm({ ...args, ciphertext: truncated }))).toBe("DECRYPT_FAILED");
    const tagOnlyPrefix = bytes.subarray(0, 15).toString("base64");
    expect(codeOf(() => decryptAeadAes256Gcm({ ...args, ciphertext: tagOnlyPrefix }))).toBe("DECRYPT_FAILED");
    const flipped = Buffer.from(bytes);
    flipped[0] = (flipped[0] ?? 0) ^ 0x80;
    expect(codeOf(() => decryptAeadAes256Gcm({ ...args, ciphertext: flipped.toString("base64") }))).toBe(
      "DECRYPT_FAILED",
    );
    expect(codeOf(() => decryptAeadAes256Gcm({ ...args, ciphertext: "" }))).toBe("DECRYPT_FAILED");
    expect(codeOf(() => decryptAeadAes256Gcm({ ...args, ciphertext: `${v.ciphertext}!` }))).toBe("DECRYPT_FAILED");
    expect(codeOf(() => decryptAeadAes256Gcm({ ...args, nonce: "" }))).toBe("DECRYPT_FAILED");
  });
});

describe("V6 — /v3/certificates entry (wechatpay-java TestConfig)", () => {
  const v = vectors.V6;
  const plaintext = decryptAeadAes256Gcm({
    key: Buffer.from(v.key),
    nonce: v.nonce,
    associatedData: v.associated_data,
    ciphertext: v.ciphertext,
  });

  it("decrypts to the documented PEM (length and sha256)", () => {
    expect(plaintext.length).toBe(v.plaintext_len);
    expect(sha256(plaintext)).toBe(v.plaintext_sha256);
  });

  it("is a Tenpay platform certificate with the listed serial and validity", () => {
    const cert = loadCertificate(plaintext);
    expect(cert.serial).toBe(v.serial_no);
    expect(cert.serial).toBe(v.expected_certificate.serial);
    expect(cert.notBefore.getTime()).toBe(new Date(v.effective_time).getTime());
    expect(cert.notAfter.getTime()).toBe(new Date(v.expire_time).getTime());
    const x509 = new X509Certificate(plaintext);
    expect(x509.subject).toContain(v.expected_certificate.subject_contains);
    expect(x509.issuer).toContain(v.expected_certificate.issuer_contains);
    const store = new KeyStore();
    store.addCertificate(cert);
    expect(store.resolve(v.serial_no.toLowerCase(), new Date("2025-01-01T00:00:00Z"))).toBe(cert.publicKey);
    expect(codeOf(() => store.resolve(v.serial_no, new Date("2028-09-18T00:00:00Z")))).toBe("CERTIFICATE_EXPIRED");
    expect(codeOf(() => store.resolve(v.serial_no, new Date("2023-09-01T00:00:00Z")))).toBe(
      "CERTIFICATE_NOT_YET_VALID",
    );
  });

  it("negative: wrong associated_data fails", () => {
    expect(
      codeOf(() =>
        decryptAeadAes256Gcm({
          key: Buffer.from(v.key),
          nonce: v.nonce,
          associatedData: "certificates",
          ciphertext: v.ciphertext,
        }),
      ),
    ).toBe("DECRYPT_FAILED");
  });
});

describe("V7 — AES-256-GCM with a 16-byte IV and empty inputs (axios plugin)", () => {
  const v = vectors.V7;
  for (const c of v.cases) {
    it(`case ${c.case}: decrypts and re-encrypts`, () => {
      const args = { key: Buffer.from(v.key), nonce: v.iv, associatedData: c.aad };
      expect(decryptAeadAes256Gcm({ ...args, ciphertext: c.ciphertext }).toString("utf8")).toBe(c.plaintext);
      const again = encryptAeadAes256Gcm({ ...args, plaintext: c.plaintext });
      expect(Buffer.from(again, "base64").equals(Buffer.from(c.ciphertext, "base64"))).toBe(true);
    });
  }
  it("case b as a notification's resource: it authenticates (not DECRYPT_FAILED) but is no resource — PAYLOAD_INVALID", () => {
    // Protocol notes V7: GCM allows an empty plaintext (ciphertext = tag only), and §1.8 wants a resource longer than
    // the tag: an empty one is a payload error, not our key being wrong (DECRYPT_FAILED is answered 500 and retried as
    // a key mismatch) nor an exception of JSON.parse("").
    const c = v.cases[1];
    if (!c) throw new Error("vector V7 has no case b");
    const body = JSON.stringify({
      id: "EV-V7B",
      create_time: "2021-06-24T16:37:26+08:00",
      resource_type: "encrypt-resource",
      event_type: "TRANSACTION.SUCCESS",
      summary: "支付成功",
      resource: {
        original_type: "transaction",
        algorithm: "AEAD_AES_256_GCM",
        ciphertext: c.ciphertext,
        associated_data: c.aad,
        nonce: v.iv,
      },
    });
    expect(Buffer.from(c.ciphertext, "base64").length).toBe(16);
    let thrown: unknown;
    try {
      openV3Notification(body, Buffer.from(v.key));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(WechatPayError);
    expect(thrown).toMatchObject({ code: "PAYLOAD_INVALID", message: "decrypted resource is empty" });
    expect(codeOf(() => openV3Notification(body, Buffer.from(v.key.replace("0", "1"))))).toBe("DECRYPT_FAILED");
  });
  it("negative: the 12-byte prefix of the IV is not the same IV", () => {
    const c = v.cases[0];
    if (!c) throw new Error("vector V7 has no case a");
    expect(
      codeOf(() =>
        decryptAeadAes256Gcm({
          key: Buffer.from(v.key),
          nonce: v.iv.slice(0, 12),
          associatedData: c.aad,
          ciphertext: c.ciphertext,
        }),
      ),
    ).toBe("DECRYPT_FAILED");
  });
});

describe("V8 — v2 sign (WxJava SignUtilsTest, official doc sample)", () => {
  const v = vectors.V8;
  const params = parseSignString(v.string);
  it("builds the documented sign string and both signatures", () => {
    expect(v2SignString(params, v.key)).toBe(`${v.string}&key=${v.key}`);
    expect(signV2(params, v.key, "MD5")).toBe(v.md5);
    expect(signV2(params, v.key, "HMAC-SHA256")).toBe(v.hmac_sha256);
  });
  it("verifies either algorithm, and lower-case hex too", () => {
    expect(verifyV2({ ...params, sign: v.md5 }, v.key)).toBe("MD5");
    expect(verifyV2({ ...params, sign: v.hmac_sha256 }, v.key)).toBe("HMAC-SHA256");
    expect(verifyV2({ ...params, sign: v.md5.toLowerCase() }, v.key)).toBe("MD5");
  });
  it("negative: wrong key, changed field", () => {
    expect(codeOf(() => verifyV2({ ...params, sign: v.md5 }, `${v.key}x`))).toBe("V2_SIGN_INVALID");
    expect(codeOf(() => verifyV2({ ...params, body: "test2", sign: v.md5 }, v.key))).toBe("V2_SIGN_INVALID");
  });
  it("negative: a sign with whitespace around it, which WeChat never sends", () => {
    for (const sign of [`${v.md5} `, ` ${v.md5}`, `${v.hmac_sha256}\n`, `\t${v.md5}`]) {
      expect(
        codeOf(() => verifyV2({ ...params, sign }, v.key)),
        JSON.stringify(sign),
      ).toBe("V2_SIGN_INVALID");
    }
  });
});

describe("V9 — v2 payment notification (PHP fixture signed with the V8 key)", () => {
  const v = vectors.V9;
  const fields = parseSignString(v.string);

  /** The notification as WeChat writes it: strings in CDATA, numbers bare. */
  function notificationXml(sign: string, signType?: string): string {
    const parts = Object.entries({ ...fields, ...(signType ? { sign_type: signType } : {}), sign }).map(([k, value]) =>
      /^[0-9]+$/.test(value) && k !== "out_trade_no" ? `<${k}>${value}</${k}>` : `<${k}><![CDATA[${value}]]></${k}>`,
    );
    return `<xml>\n  ${parts.join("\n  ")}\n</xml>`;
  }

  it("the sign string rebuilt from the fields equals the vector's", () => {
    expect(v2SignString(fields, v.key)).toBe(`${v.string}&key=${v.key}`);
    expect(signV2(fields, v.key, "MD5")).toBe(v.md5);
    expect(signV2(fields, v.key, "HMAC-SHA256")).toBe(v.hmac_sha256);
  });

  it("parses the XML (CDATA and bare values, Chinese text) and verifies MD5 and HMAC-SHA256", () => {
    const parsed = parseV2Xml(Buffer.from(notificationXml(v.md5), "utf8"));
    expect(parsed.attach).toBe("支付测试");
    expect(parsed.total_fee).toBe("1");
    expect(verifyV2(parsed, v.key)).toBe("MD5");
    // sign_type is itself a signed field, so the HMAC vector applies to the fields without it.
    expect(verifyV2(parseV2Xml(notificationXml(v.hmac_sha256)), v.key)).toBe("HMAC-SHA256");
    const withType = parseV2Xml(
      notificationXml(signV2({ ...fields, sign_type: "HMAC-SHA256" }, v.key, "HMAC-SHA256"), "HMAC-SHA256"),
    );
    expect(verifyV2(withType, v.key)).toBe("HMAC-SHA256");
  });

  it("negative: the fixture's own sign (doc sample, unknown key) does not verify", () => {
    for (const negative of v.negative) {
      expect(codeOf(() => verifyV2(parseV2Xml(notificationXml(negative.md5)), v.key))).toBe("V2_SIGN_INVALID");
    }
  });

  it("negative: a changed amount fails", () => {
    const tampered = notificationXml(v.md5).replace("<total_fee>1</total_fee>", "<total_fee>100</total_fee>");
    expect(codeOf(() => verifyV2(parseV2Xml(tampered), v.key))).toBe("V2_SIGN_INVALID");
  });
});

describe("V10 — v2 refund key derivation (axios plugin hash.test.js)", () => {
  const [keyCase, emptyCase] = vectors.V10.cases;
  it("md5(apiKey) as lower-case hex is the AES key", () => {
    if (!keyCase || !emptyCase) throw new Error("vector V10 needs two cases");
    expect(v2RefundKey(keyCase.string).toString("ascii")).toBe(keyCase.md5);
    expect(v2RefundKey(keyCase.string).length).toBe(32);
  });
  it("an empty parameter set signs as md5('&key=' + key)", () => {
    if (!keyCase || !emptyCase) throw new Error("vector V10 needs two cases");
    expect(emptyCase.string).toBe(`&key=${keyCase.string}`);
    expect(signV2({}, keyCase.string, "MD5")).toBe(emptyCase.md5.toUpperCase());
  });
});

describe("V11 — AES-256-ECB / PKCS#7 (wechatpay-php AesEcbTest)", () => {
  const v = vectors.V11;
  it("decrypts and encrypts", () => {
    expect(decryptAes256Ecb(v.ciphertext, Buffer.from(v.key)).toString("utf8")).toBe(v.plaintext);
    expect(encryptAes256Ecb(v.plaintext, Buffer.from(v.key))).toBe(v.ciphertext);
  });
  it("negative: wrong key (bad padding), truncated, not base64", () => {
    expect(codeOf(() => decryptAes256Ecb(v.ciphertext, Buffer.from(v.key.toUpperCase())))).toBe("DECRYPT_FAILED");
    expect(
      codeOf(() =>
        decryptAes256Ecb(Buffer.from(v.ciphertext, "base64").subarray(0, 15).toString("base64"), Buffer.from(v.key)),
      ),
    ).toBe("DECRYPT_FAILED");
    expect(codeOf(() => decryptAes256Ecb("", Buffer.from(v.key)))).toBe("DECRYPT_FAILED");
    expect(codeOf(() => decryptAes256Ecb("pZwJ*BLuy3mDACEQT4YTBw==", Buffer.from(v.key)))).toBe("DECRYPT_FAILED");
  });
});

describe("V12 — v2 refund req_info (go-pay/gopay notify_test.go)", () => {
  const v = vectors.V12;
  it("derives the AES key and decrypts to the documented plaintext", () => {
    expect(v2RefundKey(v.api_key).toString("ascii")).toBe(v.aes_key);
    const plaintext = decryptAes256Ecb(v.req_info, v2RefundKey(v.api_key));
    expect(plaintext.length).toBe(v.plaintext_len);
    expect(sha256(plaintext)).toBe(v.plaintext_sha256);
  });
  it("yields exactly the expected fields", () => {
    expect(decryptV2ReqInfo(v.req_info, v.api_key)).toEqual(v.expected_fields);
  });
  it("encryptV2ReqInfo writes WeChat's layout: re-encrypting the fields reproduces req_info byte for byte", () => {
    expect(encryptV2ReqInfo(v.expected_fields, v.api_key)).toBe(v.req_info);
  });
  it("negative: wrong key, truncated, flipped byte", () => {
    expect(codeOf(() => decryptV2ReqInfo(v.req_info, `${v.api_key}x`))).toBe("DECRYPT_FAILED");
    const bytes = Buffer.from(v.req_info, "base64");
    expect(codeOf(() => decryptV2ReqInfo(bytes.subarray(0, bytes.length - 16).toString("base64"), v.api_key))).toBe(
      "DECRYPT_FAILED",
    );
    expect(codeOf(() => decryptV2ReqInfo(bytes.subarray(0, bytes.length - 3).toString("base64"), v.api_key))).toBe(
      "DECRYPT_FAILED",
    );
    const flipped = Buffer.from(bytes);
    flipped[40] = (flipped[40] ?? 0) ^ 0xff;
    expect(codeOf(() => decryptV2ReqInfo(flipped.toString("base64"), v.api_key))).toBe("DECRYPT_FAILED");
  });
});

describe("async variant propagates the same codes", () => {
  it("SERIAL_UNKNOWN through verifyV3Async", async () => {
    const v = vectors.V1;
    const headers: V3Headers = {
      timestamp: v.timestamp,
      nonce: v.nonce,
      signature: v.signature,
      serial: "00",
      signatureType: "WECHATPAY2-SHA256-RSA2048",
    };
    expect(
      await asyncCodeOf(() =>
        verifyV3Async(headers, Buffer.from(v.body), { keys: new KeyStore(), now: new Date(v.now * 1000) }),
      ),
    ).toBe("SERIAL_UNKNOWN");
  });
});
