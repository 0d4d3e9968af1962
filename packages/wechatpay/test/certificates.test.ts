import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  buildAuthorization,
  buildRequestMessage,
  CERTIFICATES_PATH,
  type DownloadCertificatesArgs,
  downloadCertificates,
  encryptAeadAes256Gcm,
  KeyStore,
  loadCertificate,
  parseAuthorization,
  verifyRsaSha256,
  type WechatPayError,
} from "../src/index.ts";
import { certificateEntry, type FakeWechat, signedJson, startFakeWechat } from "./support/fake-wechat.ts";
import {
  codeOf,
  platformCert,
  rsaKeyPair,
  TEST_APIV3_KEY,
  type TestKeyPair,
  type TestPlatformCert,
} from "./support/keys.ts";
import { vectors } from "./support/vectors.ts";

const MCHID = "1900000001";
const MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD1A3F3AA5";
const PUB_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006";

let fake: FakeWechat;
let merchant: TestKeyPair;
let platformA: TestPlatformCert;
let platformB: TestPlatformCert;
let wechatPublicKey: TestKeyPair;

beforeAll(async () => {
  fake = await startFakeWechat();
  merchant = rsaKeyPair();
  platformA = platformCert("5157F09EFDC096DE15EBE81A47057A7232F1B8E1");
  platformB = platformCert("0A1B2C3D4E5F60718293A4B5C6D7E8F901234567");
  wechatPublicKey = rsaKeyPair();
});
afterAll(() => fake.close());
beforeEach(() => {
  fake.requests.length = 0;
});

function args(overrides: Partial<DownloadCertificatesArgs> = {}): DownloadCertificatesArgs {
  return {
    baseUrl: fake.baseUrl,
    mchid: MCHID,
    merchantSerialNo: MERCHANT_SERIAL,
    merchantPrivateKey: merchant.privateKey,
    apiV3Key: TEST_APIV3_KEY,
    ...overrides,
  };
}

function listOf(...certs: TestPlatformCert[]): string {
  return JSON.stringify({
    data: certs.map((c) => certificateEntry({ pem: c.pem, serial: c.serial, apiV3Key: TEST_APIV3_KEY })),
  });
}

async function failure(promise: Promise<unknown>): Promise<WechatPayError> {
  try {
    await promise;
  } catch (e) {
    return e as WechatPayError;
  }
  throw new Error("expected a rejection");
}

describe("buildAuthorization / parseAuthorization", () => {
  it("produces the documented header, signed over METHOD\\nPATH\\nTS\\nNONCE\\nBODY\\n", () => {
    const now = new Date("2024-05-01T00:00:00Z");
    const header = buildAuthorization({
      mchid: MCHID,
      serialNo: MERCHANT_SERIAL,
      privateKey: merchant.privateKey,
      method: "post",
      urlPath: "/v3/pay/transactions/jsapi",
      body: '{"amount":{"total":1}}',
      now,
      nonce: "593BEC0C930BF1AFEB40B4A08C8FB242",
    });
    expect(header).toMatch(
      /^WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",timestamp="1714521600",serial_no="3775B6A45ACD588826D15E583A95F5DD1A3F3AA5",signature="[A-Za-z0-9+/]+={0,2}"$/,
    );
    const parsed = parseAuthorization(header);
    const message = buildRequestMessage(
      "POST",
      "/v3/pay/transactions/jsapi",
      "1714521600",
      parsed.nonce_str,
      '{"amount":{"total":1}}',
    );
    expect(message.toString()).toBe(
      'POST\n/v3/pay/transactions/jsapi\n1714521600\n593BEC0C930BF1AFEB40B4A08C8FB242\n{"amount":{"total":1}}\n',
    );
    expect(verifyRsaSha256(message, parsed.signature, merchant.publicKey)).toBe(true);
    // A GET signs an empty body line.
    const get = parseAuthorization(
      buildAuthorization({
        mchid: MCHID,
        serialNo: MERCHANT_SERIAL,
        privateKey: merchant.privateKey,
        method: "GET",
        urlPath: "/v3/certificates",
        now,
      }),
    );
    expect(
      verifyRsaSha256(
        buildRequestMessage("GET", "/v3/certificates", get.timestamp, get.nonce_str, ""),
        get.signature,
        merchant.publicKey,
      ),
    ).toBe(true);
    expect(get.nonce_str).toMatch(/^[A-Za-z0-9]{32}$/);
  });

  it("refuses values that would break the header, and relative paths", () => {
    const base = {
      mchid: MCHID,
      serialNo: MERCHANT_SERIAL,
      privateKey: merchant.privateKey,
      method: "GET",
      urlPath: "/v3/certificates",
    };
    expect(() => buildAuthorization({ ...base, mchid: 'x",serial_no="y' })).toThrow(RangeError);
    expect(() => buildAuthorization({ ...base, nonce: "a\nb" })).toThrow(RangeError);
    expect(() => buildAuthorization({ ...base, serialNo: "" })).toThrow(RangeError);
    expect(() => buildAuthorization({ ...base, urlPath: "v3/certificates" })).toThrow(RangeError);
  });

  it("parseAuthorization rejects other schemes, malformed, repeated and missing fields", () => {
    expect(codeOf(() => parseAuthorization('Bearer mchid="1"'))).toBe("HEADER_INVALID");
    expect(codeOf(() => parseAuthorization("WECHATPAY2-SHA256-RSA2048 mchid=1"))).toBe("HEADER_INVALID");
    expect(codeOf(() => parseAuthorization('WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2"'))).toBe("HEADER_INVALID");
    expect(
      codeOf(() => parseAuthorization('WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",timestamp="1",serial_no="s"')),
    ).toBe("HEADER_INVALID");
  });
});

describe("downloadCertificates against a fake WeChat", () => {
  it("bootstrap: downloads two certificates, response signed by one of them; the request is properly signed", async () => {
    fake.respond = () =>
      signedJson({ body: listOf(platformA, platformB), privateKey: platformA.privateKey, serial: platformA.serial });
    const certs = await downloadCertificates(args());
    expect(certs.map((c) => c.serial)).toEqual([platformA.serial, platformB.serial]);
    expect(certs[0]?.publicKey.equals(platformA.publicKey)).toBe(true);

    expect(fake.requests).toHaveLength(1);
    const request = fake.requests[0];
    expect(request?.method).toBe("GET");
    expect(request?.url).toBe(CERTIFICATES_PATH);
    expect(request?.headers["user-agent"]).toMatch(/wpn-wechatpay/);
    expect(request?.headers.accept).toBe("application/json");
    const auth = parseAuthorization(String(request?.headers.authorization));
    expect(auth.mchid).toBe(MCHID);
    expect(auth.serial_no).toBe(MERCHANT_SERIAL);
    const message = buildRequestMessage("GET", CERTIFICATES_PATH, auth.timestamp, auth.nonce_str, "");
    expect(verifyRsaSha256(message, auth.signature, merchant.publicKey)).toBe(true);
  });

  it("a serial_no spelled without the certificate serial's leading zero, in lower case, is the same serial", async () => {
    // platformB's serial is 0A1B…; Java's BigInteger.toString(16) writes a1b….
    const entry = certificateEntry({
      pem: platformB.pem,
      serial: platformB.serial.replace(/^0+/, "").toLowerCase(),
      apiV3Key: TEST_APIV3_KEY,
    });
    fake.respond = () =>
      signedJson({
        body: JSON.stringify({ data: [entry] }),
        privateKey: platformB.privateKey,
        serial: platformB.serial,
      });
    const certs = await downloadCertificates(args());
    expect(certs.map((c) => c.serial)).toEqual([platformB.serial]);
  });

  it("real vector V6 served by the fake, response signed with a trusted WeChat Pay public key", async () => {
    const v = vectors.V6;
    const entry = {
      serial_no: v.serial_no,
      effective_time: v.effective_time,
      expire_time: v.expire_time,
      encrypt_certificate: {
        algorithm: "AEAD_AES_256_GCM",
        nonce: v.nonce,
        associated_data: v.associated_data,
        ciphertext: v.ciphertext,
      },
    };
    fake.respond = () =>
      signedJson({
        body: JSON.stringify({ data: [entry] }),
        privateKey: wechatPublicKey.privateKey,
        serial: PUB_KEY_ID,
      });
    const trustedKeys = new KeyStore();
    trustedKeys.addPublicKey(PUB_KEY_ID, wechatPublicKey.publicKey);
    const certs = await downloadCertificates(args({ apiV3Key: Buffer.from(v.key), trustedKeys }));
    expect(certs).toHaveLength(1);
    expect(certs[0]?.serial).toBe(v.serial_no);
    expect(certs[0]?.notAfter.toISOString()).toBe(new Date(v.expire_time).toISOString());
  });

  it("narrows each certificate's validity to the listed effective_time and expire_time, never widens it", async () => {
    // WeChat moves an old certificate's expire_time (弃用时间) forward 24 h before it switches to a new one: that is when
    // the key retires, years before its X.509 notAfter. The new one is listed at least 24 h ahead of its
    // effective_time (启用时间). WeChat's times have whole seconds.
    const second = (ms: number) => new Date(Math.floor(ms / 1000) * 1000);
    const retiresAt = second(Date.now() + 2 * 3_600_000);
    const effectiveAt = second(Date.now() + 86_400_000);
    const platformC = platformCert("0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C", { keys: platformA });
    const own = (c: TestPlatformCert) => loadCertificate(c.pem);
    const year = 365 * 86_400_000;
    const entries = [
      certificateEntry({
        pem: platformA.pem,
        serial: platformA.serial,
        apiV3Key: TEST_APIV3_KEY,
        expireTime: retiresAt,
      }),
      certificateEntry({
        pem: platformB.pem,
        serial: platformB.serial,
        apiV3Key: TEST_APIV3_KEY,
        effectiveTime: effectiveAt,
      }),
      // Listed wider than the certificate itself: the certificate's own validity still bounds it.
      certificateEntry({
        pem: platformC.pem,
        serial: platformC.serial,
        apiV3Key: TEST_APIV3_KEY,
        effectiveTime: new Date(own(platformC).notBefore.getTime() - year),
        expireTime: new Date(own(platformC).notAfter.getTime() + year),
      }),
    ];
    fake.respond = () =>
      signedJson({
        body: JSON.stringify({ data: entries }),
        privateKey: platformA.privateKey,
        serial: platformA.serial,
      });
    const [a, b, c] = await downloadCertificates(args());
    expect([a?.notBefore, a?.notAfter]).toEqual([own(platformA).notBefore, retiresAt]);
    expect([b?.notBefore, b?.notAfter]).toEqual([effectiveAt, own(platformB).notAfter]);
    expect([c?.notBefore, c?.notAfter]).toEqual([own(platformC).notBefore, own(platformC).notAfter]);
    // What the store then says at those times.
    const store = new KeyStore();
    for (const cert of [a, b]) if (cert) store.addCertificate(cert);
    const after = (date: Date, ms: number) => new Date(date.getTime() + ms);
    expect(codeOf(() => store.resolve(platformA.serial, after(retiresAt, 61_000)))).toBe("CERTIFICATE_EXPIRED");
    expect(codeOf(() => store.resolve(platformB.serial, after(effectiveAt, -61_000)))).toBe(
      "CERTIFICATE_NOT_YET_VALID",
    );
    expect(store.resolve(platformB.serial, after(effectiveAt, 1_000)).equals(platformB.publicKey)).toBe(true);
  });

  it("an entry without associated_data is decrypted with empty AAD", async () => {
    const entry = certificateEntry({ pem: platformA.pem, serial: platformA.serial, apiV3Key: TEST_APIV3_KEY }) as {
      encrypt_certificate: Record<string, string>;
    };
    const { nonce } = entry.encrypt_certificate;
    entry.encrypt_certificate.ciphertext = encryptAeadAes256Gcm({
      key: TEST_APIV3_KEY,
      nonce: String(nonce),
      associatedData: "",
      plaintext: platformA.pem,
    });
    delete entry.encrypt_certificate.associated_data;
    fake.respond = () =>
      signedJson({
        body: JSON.stringify({ data: [entry] }),
        privateKey: platformA.privateKey,
        serial: platformA.serial,
      });
    await expect(downloadCertificates(args())).resolves.toHaveLength(1);
  });

  it("keeps a path prefix of the base URL, and signs it", async () => {
    fake.respond = () =>
      signedJson({ body: listOf(platformA), privateKey: platformA.privateKey, serial: platformA.serial });
    await downloadCertificates(args({ baseUrl: `${fake.baseUrl}/wechat/` }));
    const request = fake.requests[0];
    expect(request?.url).toBe("/wechat/v3/certificates");
    const auth = parseAuthorization(String(request?.headers.authorization));
    expect(
      verifyRsaSha256(
        buildRequestMessage("GET", "/wechat/v3/certificates", auth.timestamp, auth.nonce_str, ""),
        auth.signature,
        merchant.publicKey,
      ),
    ).toBe(true);
  });

  it("a list that only the previous APIv3 key opens is accepted as one the current key opens: same bootstrap rules", async () => {
    const previousKey = Buffer.from("previous-apiv3-key-0123456789abc", "ascii");
    const body = JSON.stringify({
      data: [certificateEntry({ pem: platformB.pem, serial: platformB.serial, apiV3Key: previousKey })],
    });
    // A process restarted with the new key before WeChat switched: nothing trusted yet, the list signed by one of its
    // own certificates (WeChat's bootstrap) — accepted, or that process would have no key until the switch.
    fake.respond = () => signedJson({ body, privateKey: platformB.privateKey, serial: platformB.serial });
    const certs = await downloadCertificates(args({ previousApiV3Key: previousKey }));
    expect(certs.map((c) => c.serial)).toEqual([platformB.serial]);
    // Signed by a key already trusted: accepted too.
    fake.respond = () => signedJson({ body, privateKey: wechatPublicKey.privateKey, serial: PUB_KEY_ID });
    const trustedKeys = new KeyStore();
    trustedKeys.addPublicKey(PUB_KEY_ID, wechatPublicKey.publicKey);
    const trusted = await downloadCertificates(args({ previousApiV3Key: previousKey, trustedKeys }));
    expect(trusted.map((c) => c.serial)).toEqual([platformB.serial]);
    // Signed by a key neither trusted nor listed: refused, as with the current key.
    fake.respond = () => signedJson({ body, privateKey: platformA.privateKey, serial: platformA.serial });
    expect((await failure(downloadCertificates(args({ previousApiV3Key: previousKey })))).code).toBe(
      "CERT_DOWNLOAD_FAILED",
    );
    // Without the previous key it does not open at all.
    fake.respond = () => signedJson({ body, privateKey: platformB.privateKey, serial: platformB.serial });
    expect((await failure(downloadCertificates(args()))).code).toBe("CERT_DOWNLOAD_FAILED");
  });

  it("an empty list verified by trusted keys yields []", async () => {
    fake.respond = () =>
      signedJson({ body: '{"data":[]}', privateKey: wechatPublicKey.privateKey, serial: PUB_KEY_ID });
    const trustedKeys = new KeyStore();
    trustedKeys.addPublicKey(PUB_KEY_ID, wechatPublicKey.publicKey);
    await expect(downloadCertificates(args({ trustedKeys }))).resolves.toEqual([]);
  });

  it("uses an injected fetch", async () => {
    const response = signedJson({
      body: listOf(platformB),
      privateKey: platformB.privateKey,
      serial: platformB.serial,
    });
    let calledWith = "";
    const fetchStub: typeof fetch = async (input) => {
      calledWith = String(input);
      return new Response(response.body, { status: 200, headers: response.headers });
    };
    const certs = await downloadCertificates(args({ baseUrl: "https://api.example.invalid", fetch: fetchStub }));
    expect(calledWith).toBe("https://api.example.invalid/v3/certificates");
    expect(certs[0]?.serial).toBe(platformB.serial);
  });

  describe("failures are CERT_DOWNLOAD_FAILED with the reason as cause", () => {
    const cases: Array<
      [string, () => ReturnType<FakeWechat["respond"]>, string | undefined, Partial<DownloadCertificatesArgs>?]
    > = [
      ["HTTP error status", () => ({ status: 401, body: '{"code":"SIGN_ERROR","message":"签名错误"}' }), undefined],
      [
        "tampered body",
        () => {
          const r = signedJson({ body: listOf(platformA), privateKey: platformA.privateKey, serial: platformA.serial });
          return { ...r, body: Buffer.from(`${String(r.body)} `) };
        },
        "SIGNATURE_INVALID",
      ],
      [
        "wrong APIv3 key",
        () => signedJson({ body: listOf(platformA), privateKey: platformA.privateKey, serial: platformA.serial }),
        "DECRYPT_FAILED",
        { apiV3Key: Buffer.from("vutsrqponmlkjihgfedcba9876543210") },
      ],
      [
        "serial_no not matching the certificate",
        () => {
          const entry = certificateEntry({ pem: platformA.pem, serial: platformB.serial, apiV3Key: TEST_APIV3_KEY });
          return signedJson({
            body: JSON.stringify({ data: [entry] }),
            privateKey: platformA.privateKey,
            serial: platformA.serial,
          });
        },
        "KEY_INVALID",
      ],
      [
        "unsupported algorithm",
        () => {
          const entry = certificateEntry({
            pem: platformA.pem,
            serial: platformA.serial,
            apiV3Key: TEST_APIV3_KEY,
            algorithm: "AEAD_SM4_GCM",
          });
          return signedJson({
            body: JSON.stringify({ data: [entry] }),
            privateKey: platformA.privateKey,
            serial: platformA.serial,
          });
        },
        "ALGORITHM_UNSUPPORTED",
      ],
      [
        "signed by an unknown serial",
        () => signedJson({ body: listOf(platformA), privateKey: platformB.privateKey, serial: platformB.serial }),
        "SERIAL_UNKNOWN",
      ],
      [
        "signed by the wrong key",
        () => signedJson({ body: listOf(platformA), privateKey: platformB.privateKey, serial: platformA.serial }),
        "SIGNATURE_INVALID",
      ],
      [
        "stale response timestamp",
        () =>
          signedJson({
            body: listOf(platformA),
            privateKey: platformA.privateKey,
            serial: platformA.serial,
            now: new Date(Date.now() - 3_600_000),
          }),
        "TIMESTAMP_SKEW",
      ],
      ["response without signature headers", () => ({ status: 200, body: listOf(platformA) }), "HEADER_MISSING"],
      [
        "expire_time that is not an RFC 3339 time (a retirement we cannot read is not ignored)",
        () => {
          const entry = certificateEntry({
            pem: platformA.pem,
            serial: platformA.serial,
            apiV3Key: TEST_APIV3_KEY,
            expireTime: "2028-09-17 23:15:58",
          });
          return signedJson({
            body: JSON.stringify({ data: [entry] }),
            privateKey: platformA.privateKey,
            serial: platformA.serial,
          });
        },
        "ENVELOPE_INVALID",
      ],
      [
        "not JSON",
        () => signedJson({ body: "<html>", privateKey: platformA.privateKey, serial: platformA.serial }),
        "ENVELOPE_INVALID",
      ],
      [
        "wrong shape",
        () => signedJson({ body: '{"data":{}}', privateKey: platformA.privateKey, serial: platformA.serial }),
        "ENVELOPE_INVALID",
      ],
      ["timeout", () => "hang", undefined, { timeoutMs: 200 }],
      ["invalid base URL", () => "hang", undefined, { baseUrl: "not a url" }],
    ];
    for (const [name, respond, causeCode, extra] of cases) {
      it(name, async () => {
        fake.respond = respond;
        const error = await failure(downloadCertificates(args(extra)));
        expect(error.code).toBe("CERT_DOWNLOAD_FAILED");
        if (causeCode) expect((error.cause as WechatPayError).code).toBe(causeCode);
        if (causeCode) expect(error.message).toContain(causeCode);
      });
    }

    it("connection refused", async () => {
      const closed = await startFakeWechat();
      await closed.close();
      const error = await failure(downloadCertificates(args({ baseUrl: closed.baseUrl })));
      expect(error.code).toBe("CERT_DOWNLOAD_FAILED");
      expect(error.cause).toBeInstanceOf(Error);
    });
  });
});
