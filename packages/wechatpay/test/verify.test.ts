import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  buildV3Message,
  KeyStore,
  readV3Headers,
  signV3Message,
  type V3Headers,
  verifyRsaSha256,
  verifyV3,
  verifyV3Async,
} from "../src/index.ts";
import { asyncCodeOf, codeOf, rsaKeyPair } from "./support/keys.ts";

const platform = rsaKeyPair();
const PUB = "PUB_KEY_ID_0000000000000024101100397200000001";
const store = new KeyStore();
store.addPublicKey(PUB, platform.publicKey);
const NOW = new Date("2025-03-01T12:00:00Z");
const TS = String(NOW.getTime() / 1000);

function signed(body: Buffer, overrides: Partial<V3Headers> = {}): V3Headers {
  const nonce = overrides.nonce ?? "fG9kLmP3qR8sT1uV2wX3yZ4aB5cD6eF7";
  const timestamp = overrides.timestamp ?? TS;
  return {
    timestamp,
    nonce,
    signature: signV3Message(buildV3Message(timestamp, nonce, body), platform.privateKey),
    serial: PUB,
    signatureType: "WECHATPAY2-SHA256-RSA2048",
    ...overrides,
  };
}

const body = Buffer.from('{"id":"EV-2018022511223320873","summary":"支付成功"}', "utf8");

describe("readV3Headers", () => {
  const base = {
    "wechatpay-timestamp": TS,
    "wechatpay-nonce": "n",
    "wechatpay-signature": "sig",
    "wechatpay-serial": PUB,
  };

  it("names the missing header; blank counts as missing", () => {
    for (const name of Object.keys(base)) {
      const headers: Record<string, string> = { ...base };
      delete headers[name];
      let message = "";
      try {
        readV3Headers(headers);
      } catch (e) {
        expect((e as { code: string }).code).toBe("HEADER_MISSING");
        message = (e as Error).message;
      }
      expect(message.toLowerCase()).toContain(name);
      expect(codeOf(() => readV3Headers({ ...base, [name]: "   " }))).toBe("HEADER_MISSING");
    }
  });

  it("trims only HTTP's optional whitespace (spaces, tabs): a no-break space or BOM is part of the value", () => {
    expect(readV3Headers({ ...base, "wechatpay-nonce": " \tn\t " }).nonce).toBe("n");
    expect(readV3Headers({ ...base, "wechatpay-nonce": "n\u00a0" }).nonce).toBe("n\u00a0");
    expect(readV3Headers({ ...base, "wechatpay-nonce": "\ufeffn" }).nonce).toBe("\ufeffn");
    expect(readV3Headers({ ...base, "wechatpay-nonce": "\u00a0" }).nonce).toBe("\u00a0");
    expect(readV3Headers({ ...base, "request-id": "r\u00a0" }).requestId).toBe("r\u00a0");
  });

  it("accepts arrays of identical values, refuses conflicting ones (also across spellings)", () => {
    expect(readV3Headers({ ...base, "wechatpay-nonce": ["n", " n "] }).nonce).toBe("n");
    expect(codeOf(() => readV3Headers({ ...base, "wechatpay-nonce": ["n", "m"] }))).toBe("HEADER_INVALID");
    expect(codeOf(() => readV3Headers({ ...base, "Wechatpay-Nonce": "m" }))).toBe("HEADER_INVALID");
    expect(readV3Headers({ ...base, "wechatpay-nonce": undefined, "WECHATPAY-NONCE": "x" }).nonce).toBe("x");
  });

  it("keeps an explicit signature type and the Request-ID", () => {
    const read = readV3Headers({
      ...base,
      "Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3",
      "request-id": "08F78BB5AF0610D302",
    });
    expect(read.signatureType).toBe("WECHATPAY2-SM2-WITH-SM3");
    expect(read.requestId).toBe("08F78BB5AF0610D302");
    expect("requestId" in readV3Headers(base)).toBe(false);
  });

  it("a Request-ID sent with different values is not refused: it is not signed, only logged; the first is kept", () => {
    const read = readV3Headers({ ...base, "request-id": [" 08F78BB5AF0610D302 ", "", "proxy-7f3a"] });
    expect(read.requestId).toBe("08F78BB5AF0610D302");
    expect(readV3Headers({ ...base, "Request-ID": "a", "request-id": "b" }).requestId).toBe("a");
    expect("requestId" in readV3Headers({ ...base, "request-id": ["", " "] })).toBe(false);
  });
});

describe("verifyV3", () => {
  it("accepts a correct signature, also with the wall clock as default time", () => {
    expect(() => verifyV3(signed(body), body, { keys: store, now: NOW })).not.toThrow();
    const live = signed(body, { timestamp: String(Math.floor(Date.now() / 1000)) });
    expect(() => verifyV3(live, body, { keys: store })).not.toThrow();
  });

  it("an empty body is a legal message (third line is just \\n)", () => {
    const empty = Buffer.alloc(0);
    expect(buildV3Message("1", "n", empty).toString()).toBe("1\nn\n\n");
    expect(() => verifyV3(signed(empty), empty, { keys: store, now: NOW })).not.toThrow();
    expect(codeOf(() => verifyV3(signed(empty), Buffer.from(" "), { keys: store, now: NOW }))).toBe(
      "SIGNATURE_INVALID",
    );
    // …and an empty body never verifies against the signature of a real one.
    expect(codeOf(() => verifyV3(signed(body), empty, { keys: store, now: NOW }))).toBe("SIGNATURE_INVALID");
  });

  it("checks in order: probe → timestamp → signature type → key → RSA", () => {
    const stale = String(Number(TS) - 3600);
    const all = {
      signature: "WECHATPAY/SIGNTEST/xyz",
      timestamp: stale,
      signatureType: "WECHATPAY2-SM2-WITH-SM3",
      serial: "UNKNOWN",
    };
    expect(codeOf(() => verifyV3(signed(body, all), body, { keys: store, now: NOW }))).toBe("SIGNATURE_PROBE");
    const { signature: _p, ...noProbe } = all;
    expect(codeOf(() => verifyV3(signed(body, noProbe), body, { keys: store, now: NOW }))).toBe("TIMESTAMP_SKEW");
    const { timestamp: _t, ...fresh } = noProbe;
    expect(codeOf(() => verifyV3(signed(body, fresh), body, { keys: store, now: NOW }))).toBe(
      "SIGNATURE_TYPE_UNSUPPORTED",
    );
    expect(
      codeOf(() => verifyV3(signed(body, { serial: "UNKNOWN", signature: "%%%" }), body, { keys: store, now: NOW })),
    ).toBe("SERIAL_UNKNOWN");
    expect(codeOf(() => verifyV3(signed(body, { signature: "%%%" }), body, { keys: store, now: NOW }))).toBe(
      "SIGNATURE_INVALID",
    );
  });

  it("the timestamp window is ±300 s by default (inclusive), configurable, compared to the millisecond", () => {
    const h = signed(body);
    const at = (ms: number) => new Date(NOW.getTime() + ms);
    expect(codeOf(() => verifyV3(h, body, { keys: store, now: at(300_000) }))).toBeUndefined();
    expect(codeOf(() => verifyV3(h, body, { keys: store, now: at(300_001) }))).toBe("TIMESTAMP_SKEW");
    expect(codeOf(() => verifyV3(h, body, { keys: store, now: at(-300_001) }))).toBe("TIMESTAMP_SKEW");
    expect(codeOf(() => verifyV3(h, body, { keys: store, now: at(60_001), toleranceSeconds: 60 }))).toBe(
      "TIMESTAMP_SKEW",
    );
    expect(
      codeOf(() => verifyV3(h, body, { keys: store, now: at(3_600_000), toleranceSeconds: 3600 })),
    ).toBeUndefined();
    expect(() => verifyV3(h, body, { keys: store, now: NOW, toleranceSeconds: -1 })).toThrow(RangeError);
    expect(() => verifyV3(h, body, { keys: store, now: NOW, toleranceSeconds: Number.NaN })).toThrow(RangeError);
  });

  it("a timestamp that is not decimal seconds is HEADER_INVALID", () => {
    for (const timestamp of ["1.5e9", "-1624523846", "0x60D4", "", "1624523846000000"]) {
      expect(codeOf(() => verifyV3(signed(body, { timestamp }), body, { keys: store, now: NOW }))).toBe(
        "HEADER_INVALID",
      );
    }
  });

  it("a signature that is not strict base64 is SIGNATURE_INVALID, never decoded leniently", () => {
    const h = signed(body);
    for (const signature of [`${h.signature}*`, h.signature.replace(/=+$/, "==="), " ", h.signature.slice(1)]) {
      expect(codeOf(() => verifyV3({ ...h, signature }, body, { keys: store, now: NOW }))).toBe("SIGNATURE_INVALID");
    }
  });

  it("refuses a parsed object instead of raw bytes", () => {
    const parsed = JSON.parse(body.toString()) as unknown as Buffer;
    expect(codeOf(() => verifyV3(signed(body), parsed, { keys: store, now: NOW }))).toBe("BODY_NOT_RAW");
    expect(codeOf(() => verifyV3(signed(body), body.toString() as unknown as Buffer, { keys: store, now: NOW }))).toBe(
      "BODY_NOT_RAW",
    );
  });

  it("a resolver returning something that is not a key gives SIGNATURE_INVALID with the cause", () => {
    const broken = { resolve: () => ({}) as KeyObject };
    expect(codeOf(() => verifyV3(signed(body), body, { keys: broken, now: NOW }))).toBe("SIGNATURE_INVALID");
  });

  it("10 MB body: a valid signature verifies, one flipped byte does not", () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 0x61);
    const h = signed(big);
    expect(() => verifyV3(h, big, { keys: store, now: NOW })).not.toThrow();
    big[5_000_000] = 0x62;
    expect(codeOf(() => verifyV3(h, big, { keys: store, now: NOW }))).toBe("SIGNATURE_INVALID");
  });
});

describe("verifyV3Async", () => {
  it("verifies on the thread pool and accepts async resolvers", async () => {
    await expect(verifyV3Async(signed(body), body, { keys: store, now: NOW })).resolves.toBeUndefined();
    const asyncKeys = { resolve: async () => platform.publicKey };
    await expect(verifyV3Async(signed(body), body, { keys: asyncKeys, now: NOW })).resolves.toBeUndefined();
  });

  it("rejects with the same codes", async () => {
    const flipped = Buffer.from(body);
    flipped[3] = (flipped[3] ?? 0) ^ 1;
    expect(await asyncCodeOf(() => verifyV3Async(signed(body), flipped, { keys: store, now: NOW }))).toBe(
      "SIGNATURE_INVALID",
    );
    expect(
      await asyncCodeOf(() =>
        verifyV3Async(signed(body, { signature: "WECHATPAY/SIGNTEST/a" }), body, { keys: store, now: NOW }),
      ),
    ).toBe("SIGNATURE_PROBE");
    expect(
      await asyncCodeOf(() => verifyV3Async(signed(body, { signature: "!" }), body, { keys: store, now: NOW })),
    ).toBe("SIGNATURE_INVALID");
    const broken = { resolve: () => ({}) as KeyObject };
    expect(await asyncCodeOf(() => verifyV3Async(signed(body), body, { keys: broken, now: NOW }))).toBe(
      "SIGNATURE_INVALID",
    );
    // An Ed25519 key cannot do RSA-SHA256: the thread-pool job itself reports the error (callback error path).
    const edKeys = { resolve: () => generateKeyPairSync("ed25519").publicKey };
    let error: unknown;
    try {
      await verifyV3Async(signed(body), body, { keys: edKeys, now: NOW });
    } catch (e) {
      error = e;
    }
    expect((error as { code: string }).code).toBe("SIGNATURE_INVALID");
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect(codeOf(() => verifyV3(signed(body), body, { keys: edKeys, now: NOW }))).toBe("SIGNATURE_INVALID");
  });
});

describe("verifyRsaSha256", () => {
  it("is false for bad base64, empty signature and unusable keys", () => {
    const sig = signV3Message("m", platform.privateKey);
    expect(verifyRsaSha256("m", sig, platform.publicKey)).toBe(true);
    expect(verifyRsaSha256(Buffer.from("m"), sig, platform.publicKey)).toBe(true);
    expect(verifyRsaSha256("m", "", platform.publicKey)).toBe(false);
    expect(verifyRsaSha256("m", "***", platform.publicKey)).toBe(false);
    expect(verifyRsaSha256("m", sig, {} as KeyObject)).toBe(false);
  });
});
