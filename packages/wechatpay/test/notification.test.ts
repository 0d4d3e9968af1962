import { describe, expect, it } from "vitest";
import {
  createSignedV3Notification,
  decryptAeadAes256Gcm,
  decryptResource,
  encryptAeadAes256Gcm,
  formatChinaTime,
  KeyStore,
  MAX_OUT_REFUND_NO_LENGTH,
  MAX_OUT_TRADE_NO_LENGTH,
  openV3Notification,
  parseV3Envelope,
  RefundResultSchema,
  randomNonce,
  refundMerchant,
  type Transaction,
  TransactionSchema,
  transactionMerchant,
  type V3Envelope,
  verifyAndOpenV3Notification,
} from "../src/index.ts";
import { asyncCodeOf, codeOf, platformCert, rsaKeyPair, TEST_APIV3_KEY } from "./support/keys.ts";

const PUB = "PUB_KEY_ID_0000000000000024101100397200000006";
const wechatKey = rsaKeyPair();
const cert = platformCert("5157F09EFDC096DE15EBE81A47057A7232F1B8E1");
const store = new KeyStore();
store.addPublicKey(PUB, wechatKey.publicKey);
store.addCertificate(cert.pem);

const directTransaction = {
  mchid: "1230000109",
  appid: "wxd678efh567hg6787",
  out_trade_no: "1217752501201407033233368018",
  transaction_id: "1217752501201407033233368018",
  trade_type: "JSAPI",
  trade_state: "SUCCESS",
  trade_state_desc: "支付成功",
  bank_type: "CMC",
  attach: "自定义数据",
  success_time: "2018-06-08T10:34:56+08:00",
  payer: { openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
  amount: { total: 100, payer_total: 100, currency: "CNY", payer_currency: "CNY" },
  scene_info: { device_id: "013467007045764" },
  promotion_detail: [
    {
      coupon_id: "109519",
      name: "单品惠-6",
      scope: "SINGLE",
      type: "CASH",
      amount: 1,
      stock_id: "931386",
      wechatpay_contribute: 0,
      merchant_contribute: 0,
      other_contribute: 0,
      currency: "CNY",
      goods_detail: [{ goods_id: "M1006", quantity: 1, unit_price: 100, discount_amount: 1, goods_remark: "商品备注" }],
    },
  ],
  a_field_added_by_wechat_next_year: { nested: true },
};

const partnerTransaction = {
  sp_mchid: "1230000109",
  sub_mchid: "1900000109",
  sp_appid: "wxd678efh567hg6787",
  sub_appid: "wxd678efh567hg6999",
  out_trade_no: "1217752501201407033233368018",
  transaction_id: "1217752501201407033233368018",
  trade_type: "JSAPI",
  trade_state: "SUCCESS",
  payer: { sp_openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", sub_openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6p" },
  amount: { total: 100, currency: "CNY" },
};

const refund = {
  mchid: "1900000100",
  transaction_id: "1008450740201411110005820873",
  out_trade_no: "20150806125346",
  refund_id: "50200207182018070300011301001",
  out_refund_no: "7752501201407033233368018",
  refund_status: "SUCCESS",
  success_time: "2018-06-08T10:34:56+08:00",
  user_received_account: "招商银行信用卡0403",
  amount: { total: 999, refund: 999, payer_total: 999, payer_refund: 999 },
};

function notify(
  eventType: string,
  originalType: string,
  resource: object,
  signer: "publicKey" | "certificate" = "publicKey",
) {
  return createSignedV3Notification({
    eventType,
    originalType,
    resource,
    summary: "支付成功",
    apiV3Key: TEST_APIV3_KEY,
    privateKey: signer === "publicKey" ? wechatKey.privateKey : cert.privateKey,
    serial: signer === "publicKey" ? PUB : cert.serial,
  });
}

/** Re-encodes an envelope after changing it (for decryption-side tests that skip the signature). */
function withEnvelope(body: Buffer, change: (e: V3Envelope) => void): Buffer {
  const envelope = JSON.parse(body.toString()) as V3Envelope;
  change(envelope);
  return Buffer.from(JSON.stringify(envelope));
}

describe("createSignedV3Notification → verifyAndOpenV3Notification", () => {
  it("TRANSACTION.SUCCESS, direct merchant, signed with the public key: typed, unknown fields kept", async () => {
    const n = notify("TRANSACTION.SUCCESS", "transaction", directTransaction);
    const { event, headers } = await verifyAndOpenV3Notification({
      headers: n.headers,
      body: n.body,
      keys: store,
      apiV3Key: TEST_APIV3_KEY,
    });
    expect(headers.serial).toBe(PUB);
    expect(event.kind).toBe("transaction");
    if (event.kind !== "transaction") throw new Error("unreachable");
    expect(event.envelope.id).toBe(n.id);
    expect(event.transaction).toEqual(directTransaction);
    expect(event.transaction.amount.total).toBe(100);
    expect(transactionMerchant(event.transaction)).toEqual({ mchid: "1230000109", appid: "wxd678efh567hg6787" });
  });

  it("TRANSACTION.SUCCESS, service provider, signed with a platform certificate (same store)", async () => {
    const n = notify("TRANSACTION.SUCCESS", "transaction", partnerTransaction, "certificate");
    const { event } = await verifyAndOpenV3Notification({
      headers: n.headers,
      body: n.body,
      keys: store,
      apiV3Key: TEST_APIV3_KEY,
    });
    if (event.kind !== "transaction") throw new Error(`expected a transaction, got ${event.kind}`);
    expect(event.transaction.payer).toEqual(partnerTransaction.payer);
    expect(transactionMerchant(event.transaction)).toEqual({
      mchid: "1230000109",
      appid: "wxd678efh567hg6787",
      subMchid: "1900000109",
      subAppid: "wxd678efh567hg6999",
    });
    // Both identities present: the service-provider view wins (it is who received the money).
    expect(
      transactionMerchant(TransactionSchema.parse({ ...directTransaction, sp_mchid: "1", sp_appid: "wx1" })),
    ).toEqual({
      mchid: "1",
      appid: "wx1",
    });
    const { sub_appid: _drop, ...noSubAppid } = partnerTransaction;
    expect(transactionMerchant(TransactionSchema.parse(noSubAppid))).toEqual({
      mchid: "1230000109",
      appid: "wxd678efh567hg6787",
      subMchid: "1900000109",
    });
  });

  for (const eventType of ["REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"] as const) {
    it(`${eventType} is a typed refund`, async () => {
      const n = notify(eventType, "refund", { ...refund, refund_status: eventType.slice(7) });
      const { event } = await verifyAndOpenV3Notification({
        headers: n.headers,
        body: n.body,
        keys: store,
        apiV3Key: TEST_APIV3_KEY,
      });
      if (event.kind !== "refund") throw new Error(`expected a refund, got ${event.kind}`);
      expect(event.eventType).toBe(eventType);
      expect(event.refund.refund_status).toBe(eventType.slice(7));
      expect(refundMerchant(event.refund)).toEqual({ mchid: "1900000100" });
    });
  }

  it("unknown event types come back as a generic envelope with the decrypted resource", async () => {
    const resource = { mchid: "1234567890", out_contract_code: "21640bdbd08e473e828f3206a2741c6e" };
    const n = notify("PAYSCORE.USER_OPEN_SERVICE", "payscore", resource);
    const { event } = await verifyAndOpenV3Notification({
      headers: n.headers,
      body: n.body,
      keys: store,
      apiV3Key: TEST_APIV3_KEY,
    });
    expect(event).toMatchObject({ kind: "unknown", eventType: "PAYSCORE.USER_OPEN_SERVICE", resource });
    const fail = notify("TRANSACTION.FAIL", "transaction", { anything: 1 });
    expect(openV3Notification(fail.body, TEST_APIV3_KEY).kind).toBe("unknown");
  });

  it("verification happens before decryption: a probe or a tampered body never reaches the payload", async () => {
    const probe = createSignedV3Notification({
      eventType: "TRANSACTION.SUCCESS",
      originalType: "transaction",
      resource: directTransaction,
      apiV3Key: TEST_APIV3_KEY,
      privateKey: wechatKey.privateKey,
      serial: PUB,
      probe: true,
    });
    expect(probe.headers["Wechatpay-Signature"]).toMatch(/^WECHATPAY\/SIGNTEST\//);
    expect(
      await asyncCodeOf(() =>
        verifyAndOpenV3Notification({
          headers: probe.headers,
          body: probe.body,
          keys: store,
          apiV3Key: TEST_APIV3_KEY,
        }),
      ),
    ).toBe("SIGNATURE_PROBE");
    const n = notify("TRANSACTION.SUCCESS", "transaction", directTransaction);
    const tampered = Buffer.from(n.body.toString().replace('"summary":"支付成功"', '"summary":"支付成功 "'));
    expect(
      await asyncCodeOf(() =>
        verifyAndOpenV3Notification({ headers: n.headers, body: tampered, keys: store, apiV3Key: TEST_APIV3_KEY }),
      ),
    ).toBe("SIGNATURE_INVALID");
    expect(
      await asyncCodeOf(() =>
        verifyAndOpenV3Notification({ headers: {}, body: n.body, keys: store, apiV3Key: TEST_APIV3_KEY }),
      ),
    ).toBe("HEADER_MISSING");
    const later = new Date(Date.now() + 301_000);
    expect(
      await asyncCodeOf(() =>
        verifyAndOpenV3Notification({
          headers: n.headers,
          body: n.body,
          keys: store,
          apiV3Key: TEST_APIV3_KEY,
          now: later,
        }),
      ),
    ).toBe("TIMESTAMP_SKEW");
    await expect(
      verifyAndOpenV3Notification({
        headers: n.headers,
        body: n.body,
        keys: store,
        apiV3Key: TEST_APIV3_KEY,
        now: later,
        toleranceSeconds: 600,
      }),
    ).resolves.toBeDefined();
    expect(
      await asyncCodeOf(() =>
        verifyAndOpenV3Notification({
          headers: n.headers,
          body: n.body,
          keys: store,
          apiV3Key: TEST_APIV3_KEY,
          maxBytes: 100,
        }),
      ),
    ).toBe("BODY_TOO_LARGE");
  });

  it("writes WeChat's header set, field order and create_time format", () => {
    const now = new Date("2021-06-24T08:37:26Z");
    const n = createSignedV3Notification({
      id: "EV-2018022511223320873",
      eventType: "REFUND.SUCCESS",
      originalType: "refund",
      resource: refund,
      apiV3Key: TEST_APIV3_KEY,
      privateKey: wechatKey.privateKey,
      serial: PUB,
      now,
      nonce: "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz",
      resourceNonce: "Kj7QIyUiYx1q",
    });
    expect(Object.keys(n.headers).sort()).toEqual(
      [
        "Content-Type",
        "Wechatpay-Nonce",
        "Wechatpay-Serial",
        "Wechatpay-Signature",
        "Wechatpay-Signature-Type",
        "Wechatpay-Timestamp",
      ].sort(),
    );
    expect(n.headers["Wechatpay-Timestamp"]).toBe("1624523846");
    expect(n.headers["Wechatpay-Nonce"]).toBe("EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz");
    const envelope = JSON.parse(n.body.toString()) as Record<string, unknown>;
    expect(Object.keys(envelope)).toEqual(["id", "create_time", "resource_type", "event_type", "resource"]);
    expect(envelope.create_time).toBe("2021-06-24T16:37:26+08:00");
    expect(envelope.resource).toMatchObject({
      original_type: "refund",
      algorithm: "AEAD_AES_256_GCM",
      associated_data: "refund",
      nonce: "Kj7QIyUiYx1q",
    });
    expect(formatChinaTime(new Date("2024-12-31T20:00:00Z"))).toBe("2025-01-01T04:00:00+08:00");
    expect(randomNonce()).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(randomNonce(300)).toHaveLength(300);
  });
});

describe("openV3Notification / decryptResource failures", () => {
  const n = notify("TRANSACTION.SUCCESS", "transaction", directTransaction);

  it("ALGORITHM_UNSUPPORTED names the algorithm", () => {
    const body = withEnvelope(n.body, (e) => {
      e.resource.algorithm = "AEAD_SM4_GCM";
    });
    expect(() => openV3Notification(body, TEST_APIV3_KEY)).toThrow(/"AEAD_SM4_GCM" is not supported/);
    expect(codeOf(() => openV3Notification(body, TEST_APIV3_KEY))).toBe("ALGORITHM_UNSUPPORTED");
  });

  it("wrong key, wrong AAD, truncated ciphertext → DECRYPT_FAILED; short key → KEY_INVALID", () => {
    expect(codeOf(() => openV3Notification(n.body, Buffer.from("vutsrqponmlkjihgfedcba9876543210")))).toBe(
      "DECRYPT_FAILED",
    );
    const aad = withEnvelope(n.body, (e) => {
      e.resource.associated_data = "refund";
    });
    expect(codeOf(() => openV3Notification(aad, TEST_APIV3_KEY))).toBe("DECRYPT_FAILED");
    const noAad = withEnvelope(n.body, (e) => {
      delete e.resource.associated_data;
    });
    expect(codeOf(() => openV3Notification(noAad, TEST_APIV3_KEY))).toBe("DECRYPT_FAILED");
    const truncated = withEnvelope(n.body, (e) => {
      e.resource.ciphertext = e.resource.ciphertext.slice(0, -8);
    });
    expect(codeOf(() => openV3Notification(truncated, TEST_APIV3_KEY))).toBe("DECRYPT_FAILED");
    expect(codeOf(() => openV3Notification(n.body, TEST_APIV3_KEY.subarray(0, 16)))).toBe("KEY_INVALID");
  });

  it("an absent associated_data means empty AAD", () => {
    const nonce = "abcdefghijkl";
    const ciphertext = encryptAeadAes256Gcm({ key: TEST_APIV3_KEY, nonce, associatedData: "", plaintext: '{"a":1}' });
    const envelope = parseV3Envelope(
      JSON.stringify({
        id: "x",
        create_time: "t",
        event_type: "X.Y",
        resource_type: "encrypt-resource",
        resource: { algorithm: "AEAD_AES_256_GCM", ciphertext, nonce, original_type: "x" },
      }),
    );
    expect(decryptResource(envelope, TEST_APIV3_KEY)).toEqual({ a: 1 });
  });

  it("PAYLOAD_INVALID: not JSON, not UTF-8, or not matching the event's schema", () => {
    const encrypt = (plaintext: Buffer | string) =>
      withEnvelope(n.body, (e) => {
        e.resource.ciphertext = encryptAeadAes256Gcm({
          key: TEST_APIV3_KEY,
          nonce: e.resource.nonce,
          associatedData: e.resource.associated_data ?? "",
          plaintext,
        });
      });
    expect(codeOf(() => openV3Notification(encrypt("not json"), TEST_APIV3_KEY))).toBe("PAYLOAD_INVALID");
    expect(codeOf(() => openV3Notification(encrypt(Buffer.from([0xff, 0xfe])), TEST_APIV3_KEY))).toBe(
      "PAYLOAD_INVALID",
    );
    expect(codeOf(() => openV3Notification(encrypt(""), TEST_APIV3_KEY))).toBe("PAYLOAD_INVALID");
    const bad = (t: object) => codeOf(() => openV3Notification(encrypt(JSON.stringify(t)), TEST_APIV3_KEY));
    expect(bad({ ...directTransaction, amount: { total: 1.5, currency: "CNY" } })).toBe("PAYLOAD_INVALID");
    expect(bad({ ...directTransaction, amount: { total: -1, currency: "CNY" } })).toBe("PAYLOAD_INVALID");
    // Above WeChat's 32-bit amounts (and the integer columns): refused here, not a DB_DATA dead letter later.
    expect(bad({ ...directTransaction, amount: { total: 2 ** 31, currency: "CNY" } })).toBe("PAYLOAD_INVALID");
    expect(bad({ ...directTransaction, amount: { total: "100", currency: "CNY" } })).toBe("PAYLOAD_INVALID");
    const { out_trade_no: _o, ...noOutTradeNo } = directTransaction;
    expect(bad(noOutTradeNo)).toBe("PAYLOAD_INVALID");
    // Longer than the apply job carries (MAX_OUT_TRADE_NO_LENGTH): refused here, not a JOB_INVALID dead letter later.
    expect(bad({ ...directTransaction, out_trade_no: "T".repeat(MAX_OUT_TRADE_NO_LENGTH + 1) })).toBe(
      "PAYLOAD_INVALID",
    );
    expect(bad({ ...directTransaction, out_trade_no: "T".repeat(MAX_OUT_TRADE_NO_LENGTH) })).toBeUndefined();
    const { mchid: _m, ...noMerchant } = directTransaction;
    expect(() => openV3Notification(encrypt(JSON.stringify(noMerchant)), TEST_APIV3_KEY)).toThrow(/needs mchid\+appid/);
    const { sp_appid: _a, ...partnerNoAppid } = partnerTransaction;
    expect(bad(partnerNoAppid)).toBe("PAYLOAD_INVALID");

    const refundBody = notify("REFUND.SUCCESS", "refund", refund).body;
    const encryptRefund = (r: object) =>
      withEnvelope(refundBody, (e) => {
        e.resource.ciphertext = encryptAeadAes256Gcm({
          key: TEST_APIV3_KEY,
          nonce: e.resource.nonce,
          associatedData: e.resource.associated_data ?? "",
          plaintext: JSON.stringify(r),
        });
      });
    const { mchid: _r, ...refundNoMerchant } = refund;
    expect(codeOf(() => openV3Notification(encryptRefund(refundNoMerchant), TEST_APIV3_KEY))).toBe("PAYLOAD_INVALID");
    expect(codeOf(() => openV3Notification(encryptRefund({ ...refund, amount: { total: 1 } }), TEST_APIV3_KEY))).toBe(
      "PAYLOAD_INVALID",
    );
    const long = (field: string, length: number) =>
      codeOf(() => openV3Notification(encryptRefund({ ...refund, [field]: "R".repeat(length) }), TEST_APIV3_KEY));
    expect(long("out_trade_no", MAX_OUT_TRADE_NO_LENGTH + 1)).toBe("PAYLOAD_INVALID");
    expect(long("out_refund_no", MAX_OUT_REFUND_NO_LENGTH + 1)).toBe("PAYLOAD_INVALID");
    expect(long("out_refund_no", MAX_OUT_REFUND_NO_LENGTH)).toBeUndefined();
  });

  it("fields the payment or refund does not use never make it PAYLOAD_INVALID: null, absent or another shape", () => {
    const encryptAs = (eventType: string, originalType: string, r: object) =>
      withEnvelope(notify(eventType, originalType, r).body, (e) => {
        e.resource.ciphertext = encryptAeadAes256Gcm({
          key: TEST_APIV3_KEY,
          nonce: e.resource.nonce,
          associatedData: e.resource.associated_data ?? "",
          plaintext: JSON.stringify(r),
        });
      });
    const open = (eventType: string, originalType: string, r: object) =>
      openV3Notification(encryptAs(eventType, originalType, r), TEST_APIV3_KEY);
    const { trade_type: _t, payer: _p, ...bare } = directTransaction;
    const payments = [
      // A coupon's goods without discount_amount (WeChat's docs list it; we use no coupon field).
      { ...directTransaction, promotion_detail: [{ coupon_id: "1", amount: 10, goods_detail: [{ goods_id: "M1" }] }] },
      { ...directTransaction, promotion_detail: [{ amount: "10" }] },
      {
        ...directTransaction,
        attach: null,
        scene_info: null,
        promotion_detail: null,
        bank_type: null,
        trade_state_desc: null,
        success_time: null,
        payer: null,
        amount: { total: 100, currency: "CNY", payer_total: null, payer_currency: null },
      },
      // Neither trade_type nor payer: not what the payment is applied with.
      bare,
    ];
    for (const t of payments) {
      const event = open("TRANSACTION.SUCCESS", "transaction", t);
      expect(event.kind).toBe("transaction");
      if (event.kind !== "transaction") throw new Error("unreachable");
      expect(event.transaction.amount.total).toBe(100);
    }
    const { user_received_account: _u, success_time: _s, ...closedRefund } = refund;
    const refunds = [
      { ...refund, amount: { total: 999, refund: 999 } },
      {
        ...refund,
        user_received_account: null,
        amount: { total: 999, refund: 999, payer_total: null, payer_refund: null },
      },
      { ...closedRefund, refund_status: "CLOSED", success_time: null },
    ];
    for (const r of refunds) {
      const event = open("REFUND.SUCCESS", "refund", r);
      expect(event.kind).toBe("refund");
      if (event.kind !== "refund") throw new Error("unreachable");
      expect(event.refund.amount.refund).toBe(999);
    }
    // What the payment or refund is applied with stays strict.
    const payment = (t: object) => codeOf(() => open("TRANSACTION.SUCCESS", "transaction", t));
    expect(payment({ ...directTransaction, amount: { total: 100 } })).toBe("PAYLOAD_INVALID");
    expect(payment({ ...directTransaction, amount: { total: null, currency: "CNY" } })).toBe("PAYLOAD_INVALID");
    expect(payment({ ...directTransaction, trade_state: null })).toBe("PAYLOAD_INVALID");
    expect(payment({ ...directTransaction, transaction_id: null })).toBe("PAYLOAD_INVALID");
    expect(payment({ ...directTransaction, success_time: 20180608 })).toBe("PAYLOAD_INVALID");
    expect(payment({ ...directTransaction, payer: { openid: 42 } })).toBe("PAYLOAD_INVALID");
    const refundCode = (r: object) => codeOf(() => open("REFUND.SUCCESS", "refund", r));
    expect(refundCode({ ...refund, amount: { total: 999, refund: null } })).toBe("PAYLOAD_INVALID");
    expect(refundCode({ ...refund, amount: { total: 999, refund: 2 ** 31 } })).toBe("PAYLOAD_INVALID");
    expect(refundCode({ ...refund, refund_id: null })).toBe("PAYLOAD_INVALID");
  });

  it.each([
    ["literally", '"__proto__"'],
    ["with a \\u escape", '"\\u005f_proto__"'],
  ])("__proto__ keys in the decrypted JSON are dropped, not merged (spelled %s)", (_spelling, key) => {
    const body = withEnvelope(n.body, (e) => {
      const json = JSON.stringify(directTransaction).replace("{", `{${key}:{"polluted":true},`);
      e.resource.ciphertext = encryptAeadAes256Gcm({
        key: TEST_APIV3_KEY,
        nonce: e.resource.nonce,
        associatedData: e.resource.associated_data ?? "",
        plaintext: json,
      });
    });
    const event = openV3Notification(body, TEST_APIV3_KEY);
    if (event.kind !== "transaction") throw new Error("unreachable");
    expect(Object.getPrototypeOf(event.transaction)).toBe(Object.prototype);
    expect((event.transaction as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("parseV3Envelope", () => {
  const valid = {
    id: "EV-2018022511223320873",
    create_time: "2015-05-20T13:29:35+08:00",
    resource_type: "encrypt-resource",
    event_type: "TRANSACTION.SUCCESS",
    summary: "支付成功",
    resource: {
      original_type: "transaction",
      algorithm: "AEAD_AES_256_GCM",
      ciphertext: "AAAA",
      associated_data: "",
      nonce: "n",
    },
  };

  it("accepts a string or bytes and keeps unknown fields", () => {
    const e = parseV3Envelope(JSON.stringify({ ...valid, extra: 1 }));
    expect(e.extra).toBe(1);
    expect(parseV3Envelope(Buffer.from(JSON.stringify(valid))).summary).toBe("支付成功");
  });

  it("ENVELOPE_INVALID: empty body, not JSON, invalid UTF-8, wrong shapes", () => {
    for (const body of [
      "",
      "   ",
      "{",
      "[]",
      "null",
      '"x"',
      JSON.stringify({ ...valid, resource: undefined }),
      JSON.stringify({ ...valid, id: "" }),
      JSON.stringify({ ...valid, resource: { ...valid.resource, nonce: 5 } }),
    ]) {
      expect(codeOf(() => parseV3Envelope(body))).toBe("ENVELOPE_INVALID");
    }
    expect(codeOf(() => parseV3Envelope(Buffer.alloc(0)))).toBe("ENVELOPE_INVALID");
    expect(codeOf(() => parseV3Envelope(Buffer.from([0x7b, 0xc3, 0x28, 0x7d])))).toBe("ENVELOPE_INVALID");
  });

  it("BODY_TOO_LARGE: a 10 MB body is refused before JSON.parse; the limit is configurable", () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 0x20);
    expect(codeOf(() => parseV3Envelope(big))).toBe("BODY_TOO_LARGE");
    expect(codeOf(() => openV3Notification(big, TEST_APIV3_KEY))).toBe("BODY_TOO_LARGE");
    const text = JSON.stringify(valid);
    const bytes = Buffer.byteLength(text); // the limit counts UTF-8 bytes (支付成功 is 12 bytes), not characters
    expect(bytes).toBeGreaterThan(text.length);
    expect(codeOf(() => parseV3Envelope(text, { maxBytes: bytes - 1 }))).toBe("BODY_TOO_LARGE");
    expect(parseV3Envelope(text, { maxBytes: bytes }).id).toBe(valid.id);
  });
});

describe("payload helpers", () => {
  it("transactionMerchant / refundMerchant refuse records without a merchant", () => {
    expect(
      codeOf(() => transactionMerchant({ payer: {}, amount: { total: 1, currency: "CNY" } } as unknown as Transaction)),
    ).toBe("PAYLOAD_INVALID");
    expect(codeOf(() => refundMerchant({} as never))).toBe("PAYLOAD_INVALID");
    expect(
      refundMerchant(RefundResultSchema.parse({ ...refund, mchid: undefined, sp_mchid: "1", sub_mchid: "2" })),
    ).toEqual({
      mchid: "1",
      subMchid: "2",
    });
    expect(refundMerchant({ ...RefundResultSchema.parse(refund), sp_mchid: "9", mchid: undefined })).toEqual({
      mchid: "9",
    });
  });

  it("a direct merchant's shape naming a sub-merchant is refused, not read as the provider's own", () => {
    for (const extra of [{ sub_mchid: "1900000201" }, { sub_appid: "wxsub" }]) {
      expect(codeOf(() => transactionMerchant(TransactionSchema.parse({ ...directTransaction, ...extra })))).toBe(
        "PAYLOAD_INVALID",
      );
    }
    expect(codeOf(() => refundMerchant(RefundResultSchema.parse({ ...refund, sub_mchid: "1900000201" })))).toBe(
      "PAYLOAD_INVALID",
    );
  });

  it("the AEAD helpers round-trip text and bytes", () => {
    const nonce = "abcdefghijkl";
    const c1 = encryptAeadAes256Gcm({ key: TEST_APIV3_KEY, nonce, associatedData: "x", plaintext: "héllo" });
    const c2 = encryptAeadAes256Gcm({
      key: TEST_APIV3_KEY,
      nonce,
      associatedData: "x",
      plaintext: Buffer.from("héllo"),
    });
    expect(c1).toBe(c2);
    expect(decryptAeadAes256Gcm({ key: TEST_APIV3_KEY, nonce, associatedData: "x", ciphertext: c1 }).toString()).toBe(
      "héllo",
    );
    expect(() => encryptAeadAes256Gcm({ key: TEST_APIV3_KEY, nonce: "", associatedData: "", plaintext: "" })).toThrow(
      RangeError,
    );
    expect(
      codeOf(() => encryptAeadAes256Gcm({ key: Buffer.alloc(31), nonce, associatedData: "", plaintext: "" })),
    ).toBe("KEY_INVALID");
    expect(
      codeOf(() =>
        decryptAeadAes256Gcm({ key: "k".repeat(32) as unknown as Buffer, nonce, associatedData: "", ciphertext: c1 }),
      ),
    ).toBe("KEY_INVALID");
  });
});
