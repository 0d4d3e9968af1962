import { createDecipheriv, createHash, createHmac, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { encryptAeadAes256Gcm, parseV2Xml, signV3Headers } from "@wpn/wechatpay";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Payment,
  type Refund,
  signV2Fields,
  transactionResource,
  v2Payment,
  v2Refund,
  v3Payment,
} from "../src/notifications.ts";
import { tempKeys } from "./support/cli.ts";

/**
 * The simulator's output checked against the protocol notes' vectors and against independent reference
 * computations written here from the notes (node:crypto only), so the simulator and the ingress — which
 * share @wpn/wechatpay — cannot agree on a shared mistake.
 */

const vectors = JSON.parse(
  readFileSync(
    fileURLToPath(new URL("../../../packages/wechatpay/test/fixtures/wechatpay-vectors.json", import.meta.url)),
    "utf8",
  ),
) as Record<string, Record<string, unknown>>;
/** One vector; `s(field)` reads a string field and fails loudly when the fixture lacks it. */
function V(name: string) {
  const raw = vectors[name];
  if (raw === undefined) throw new Error(`vector ${name} missing from the fixture`);
  const s = (field: string): string => {
    const value = raw[field];
    if (typeof value !== "string") throw new Error(`vector ${name}.${field} is not a string`);
    return value;
  };
  return { s, raw };
}

/** §2.2 written out independently: non-empty fields except sign, byte order, &key=, MD5 or HMAC-SHA256, upper hex. */
function referenceV2Sign(fields: Record<string, string>, key: string, type: "MD5" | "HMAC-SHA256"): string {
  const text = `${Object.keys(fields)
    .filter((k) => k !== "sign" && fields[k] !== "")
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((k) => `${k}=${fields[k]}`)
    .join("&")}&key=${key}`;
  return (type === "MD5" ? createHash("md5").update(text, "utf8") : createHmac("sha256", key).update(text, "utf8"))
    .digest("hex")
    .toUpperCase();
}

/** §1.8 written out independently. */
function referenceGcmDecrypt(key: string, nonce: string, aad: string, ciphertext: string): string {
  const data = Buffer.from(ciphertext, "base64");
  const d = createDecipheriv("aes-256-gcm", Buffer.from(key, "utf8"), Buffer.from(nonce, "utf8"));
  d.setAAD(Buffer.from(aad, "utf8"));
  d.setAuthTag(data.subarray(data.length - 16));
  return Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]).toString("utf8");
}

function fieldsOf(signString: string): Record<string, string> {
  return Object.fromEntries(
    signString.split("&").map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]),
  );
}

const temp = tempKeys();
afterAll(() => temp.cleanup());

describe("APIv2 signatures built by the simulator", () => {
  it("the reference implementation reproduces V8 (so it can judge the simulator)", () => {
    const v8 = V("V8");
    expect(referenceV2Sign(fieldsOf(v8.s("string")), v8.s("key"), "MD5")).toBe(v8.s("md5"));
    expect(referenceV2Sign(fieldsOf(v8.s("string")), v8.s("key"), "HMAC-SHA256")).toBe(v8.s("hmac_sha256"));
  });

  it("V8: sim-built signature of the doc sample equals the vector (MD5 and HMAC-SHA256)", () => {
    const v8 = V("V8");
    const { nonce_str, ...fields } = fieldsOf(v8.s("string"));
    expect(signV2Fields(fields, v8.s("key"), "MD5", { nonce: nonce_str }).sign).toBe(v8.s("md5"));
    expect(signV2Fields(fields, v8.s("key"), "HMAC-SHA256", { nonce: nonce_str, signTypeField: false }).sign).toBe(
      v8.s("hmac_sha256"),
    );
  });

  it("V9: sim-built payment notification fields sign to the vector, and survive the XML round trip", () => {
    const v9 = V("V9");
    const { nonce_str, ...fields } = fieldsOf(v9.s("string"));
    const md5 = signV2Fields(fields, v9.s("key"), "MD5", { nonce: nonce_str });
    expect(md5.sign).toBe(v9.s("md5"));
    expect(md5.sign_type).toBeUndefined();
    const hmac = signV2Fields(fields, v9.s("key"), "HMAC-SHA256", { nonce: nonce_str, signTypeField: false });
    expect(hmac.sign).toBe(v9.s("hmac_sha256"));
  });

  it("payment XML as sent (sign_type included for HMAC) matches the reference signature", () => {
    const payment: Payment = {
      mchid: "1230000109",
      appid: "wx2421b1c4370ec43b",
      outTradeNo: "ORDER-1",
      transactionId: "4200000015201711256947025404",
      amount: 1234,
      openid: "oUpF8uMEb4qRXf22hE3X68TekukE",
      successTime: new Date("2024-01-02T03:04:05Z"),
    };
    for (const type of ["MD5", "HMAC-SHA256"] as const) {
      const fields = parseV2Xml(v2Payment(temp.keys, payment, type).sign().body);
      expect(fields.sign).toBe(referenceV2Sign(fields, temp.keys.apiV2Key, type));
      expect(fields.sign_type).toBe(type === "MD5" ? undefined : "HMAC-SHA256");
      expect(fields.total_fee).toBe("1234");
      expect(fields.time_end).toBe("20240102110405"); // China time
    }
  });
});

describe("APIv2 refund req_info built by the simulator", () => {
  it("V12: the simulator's refund with the vector's values encrypts to the vector's req_info exactly", () => {
    const v12 = V("V12");
    const f = v12.raw.expected_fields as Record<string, string>;
    const refund: Refund = {
      mchid: "1230000109",
      appid: "wx2421b1c4370ec43b",
      outTradeNo: f.out_trade_no as string,
      transactionId: f.transaction_id as string,
      outRefundNo: f.out_refund_no as string,
      refundId: f.refund_id as string,
      total: Number(f.total_fee),
      refund: Number(f.refund_fee),
      status: "SUCCESS",
      successTime: new Date("2017-11-25T15:36:17+08:00"),
    };
    const keys = { ...temp.keys, apiV2Key: v12.s("api_key") };
    const outer = parseV2Xml(v2Refund(keys, refund).sign().body);
    expect(outer.sign).toBeUndefined();
    expect(outer.req_info).toBe(v12.s("req_info"));
    // Independent ECB decryption with the documented key derivation.
    const aesKey = Buffer.from(createHash("md5").update(v12.s("api_key")).digest("hex"), "ascii");
    expect(aesKey.toString("ascii")).toBe(v12.s("aes_key"));
    const d = createDecipheriv("aes-256-ecb", aesKey, null);
    const plaintext = Buffer.concat([d.update(Buffer.from(outer.req_info as string, "base64")), d.final()]);
    expect(plaintext.length).toBe(v12.raw.plaintext_len);
    expect(createHash("sha256").update(plaintext).digest("hex")).toBe(v12.s("plaintext_sha256"));
  });
});

describe("APIv3 notifications built by the simulator", () => {
  it("V5: the encryption on the simulator's path reproduces the vector; the reference decrypts it", () => {
    const v5 = V("V5");
    const ciphertext = encryptAeadAes256Gcm({
      key: Buffer.from(v5.s("key"), "utf8"),
      nonce: v5.s("nonce"),
      associatedData: v5.s("associated_data"),
      plaintext: v5.s("plaintext"),
    });
    expect(ciphertext).toBe(v5.s("ciphertext"));
    expect(referenceGcmDecrypt(v5.s("key"), v5.s("nonce"), v5.s("associated_data"), v5.s("ciphertext"))).toBe(
      v5.s("plaintext"),
    );
  });

  it("a sim-encrypted resource under the V5 key decrypts with the reference to the transaction", () => {
    const v5 = V("V5");
    const payment: Payment = {
      mchid: "1230000109",
      appid: "wxd678efh567hg6787",
      outTradeNo: "O1",
      transactionId: "4200000000000000000000000001",
      amount: 1,
      openid: "o1",
      successTime: new Date(),
    };
    const keys = { ...temp.keys, apiV3Key: v5.s("key") };
    const { body } = v3Payment(keys, payment).sign();
    const envelope = JSON.parse(body.toString("utf8"));
    expect(envelope.resource.algorithm).toBe("AEAD_AES_256_GCM");
    expect(envelope.resource.associated_data).toBe("transaction");
    expect(envelope.resource.nonce).toMatch(/^[A-Za-z0-9]{12}$/);
    const plain = referenceGcmDecrypt(
      v5.s("key"),
      envelope.resource.nonce,
      envelope.resource.associated_data,
      envelope.resource.ciphertext,
    );
    expect(JSON.parse(plain)).toEqual(transactionResource(payment));
    expect(envelope.event_type).toBe("TRANSACTION.SUCCESS");
    expect(envelope.resource_type).toBe("encrypt-resource");
    expect(envelope.create_time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$/);
  });

  it("V1: the simulator signs exactly ts\\nnonce\\nbody\\n (the vector's message hash), checked by a reference verify", () => {
    const v1 = V("V1");
    const body = Buffer.from(v1.s("body"), "utf8");
    const headers = signV3Headers(body, {
      privateKey: temp.keys.publicKeyPrivateKey,
      serial: temp.keys.publicKeyId,
      now: new Date(Number(v1.s("timestamp")) * 1000),
      nonce: v1.s("nonce"),
    });
    expect(headers["Wechatpay-Timestamp"]).toBe(v1.s("timestamp"));
    const message = Buffer.from(`${v1.s("timestamp")}\n${v1.s("nonce")}\n${v1.s("body")}\n`, "utf8");
    expect(createHash("sha256").update(message).digest("hex")).toBe(v1.s("message_sha256"));
    const signature = Buffer.from(headers["Wechatpay-Signature"] as string, "base64");
    expect(verify("RSA-SHA256", message, temp.keys.publicKey, signature)).toBe(true);
    const flipped = Buffer.from(message);
    flipped[20] = (flipped[20] as number) ^ 1;
    expect(verify("RSA-SHA256", flipped, temp.keys.publicKey, signature)).toBe(false);
  });

  it("re-signing keeps the body and id but changes timestamp, nonce and signature", () => {
    const n = v3Payment(temp.keys, {
      mchid: "1230000109",
      appid: "wx1",
      outTradeNo: "O2",
      transactionId: "4200000000000000000000000002",
      amount: 5,
      openid: "o",
      successTime: new Date(),
    });
    const a = n.sign();
    const b = n.sign(new Date(Date.now() + 15_000));
    expect(b.body.equals(a.body)).toBe(true);
    expect(JSON.parse(b.body.toString()).id).toBe(n.id);
    expect(b.headers["Wechatpay-Nonce"]).not.toBe(a.headers["Wechatpay-Nonce"]);
    expect(b.headers["Wechatpay-Timestamp"]).not.toBe(a.headers["Wechatpay-Timestamp"]);
    expect(b.headers["Wechatpay-Signature"]).not.toBe(a.headers["Wechatpay-Signature"]);
  });
});
