import { verify as cryptoVerify, generateKeyPairSync, type KeyObject } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import {
  buildV3Message,
  KeyStore,
  RsaVerifyPool,
  signV3Message,
  type V3Headers,
  verifyV3,
  verifyV3InPool,
} from "../src/index.ts";
import { asyncCodeOf, codeOf, rsaKeyPair } from "./support/keys.ts";

const keys = [rsaKeyPair(), rsaKeyPair(), rsaKeyPair()];
const PUB = "PUB_KEY_ID_0000000000000024101100397200000001";
const store = new KeyStore();
store.addPublicKey(PUB, keys[0]!.publicKey);
const NOW = new Date("2025-03-01T12:00:00Z");
const TS = String(NOW.getTime() / 1000);
const body = Buffer.from('{"id":"EV-2018022511223320873","summary":"支付成功"}', "utf8");

function signed(payload: Buffer, overrides: Partial<V3Headers> = {}): V3Headers {
  const nonce = "fG9kLmP3qR8sT1uV2wX3yZ4aB5cD6eF7";
  return {
    timestamp: TS,
    nonce,
    signature: signV3Message(buildV3Message(TS, nonce, payload), keys[0]!.privateKey),
    serial: PUB,
    signatureType: "WECHATPAY2-SHA256-RSA2048",
    ...overrides,
  };
}

const pool = new RsaVerifyPool({ threads: 2, maxBatch: 64 });
/** A thread script that exits (code 7) on a batch whose first message is "die". */
const DYING_WORKER = new URL("./fixtures/dying-verify-worker.mjs", import.meta.url);
afterAll(() => pool.close());

describe("RsaVerifyPool", () => {
  it("gives crypto.verify's answer for every check of a burst spread over batches, threads and keys", async () => {
    // 300 checks in one turn of the event loop: 5 batches of ≤ 64 over 2 threads, 3 keys; every third
    // signature is made with another key than the one checked, every fifth message is altered.
    const checks = Array.from({ length: 300 }, (_, i) => {
      const message = Buffer.from(`${i}\nnonce-${i}\n${"x".repeat(i)}\n`);
      const signer = keys[(i + (i % 3 === 0 ? 1 : 0)) % 3]!;
      const signature = Buffer.from(signV3Message(message, signer.privateKey), "base64");
      const checked = i % 5 === 0 ? Buffer.concat([message, Buffer.from("!")]) : message;
      return { message: checked, signature, key: keys[i % 3]!.publicKey };
    });
    const answers = await Promise.all(checks.map((c) => pool.verify(c.message, c.signature, c.key)));
    const expected = checks.map((c) => cryptoVerify("sha256", c.message, c.key, c.signature));
    expect(answers).toEqual(expected);
    expect(expected.filter(Boolean).length).toBe(160);
  });

  it("answers false, not an error, for an empty signature or a key that cannot do RSA — on a thread and inline", async () => {
    const message = Buffer.from("m");
    const signature = Buffer.from(signV3Message(message, keys[0]!.privateKey), "base64");
    const ed25519 = generateKeyPairSync("ed25519").publicKey;
    const checks: [Buffer, KeyObject, boolean][] = [
      [Buffer.alloc(0), keys[0]!.publicKey, false],
      [signature, ed25519, false],
      [signature, keys[0]!.publicKey, true],
      [signature, keys[1]!.publicKey, false],
    ];
    // Together: one batch of 4, sent to a thread; one by one: batches of 1, checked inline.
    expect(await Promise.all(checks.map(([sig, key]) => pool.verify(message, sig, key)))).toEqual(
      checks.map(([, , valid]) => valid),
    );
    for (const [sig, key, valid] of checks) expect(await pool.verify(message, sig, key)).toBe(valid);
  });

  it("fails the checks of a thread that died with VERIFIER_UNAVAILABLE, then starts a new thread", async () => {
    const dying = new RsaVerifyPool({ workerUrl: DYING_WORKER, inlineBelow: 1 });
    try {
      const message = Buffer.from("m");
      const signature = Buffer.from(signV3Message(message, keys[0]!.privateKey), "base64");
      const key = keys[0]!.publicKey;
      // Same turn of the event loop: one batch, whose first message makes the thread exit.
      const lost = [dying.verify(Buffer.from("die"), signature, key), dying.verify(message, signature, key)];
      for (const check of lost) expect(await asyncCodeOf(() => check)).toBe("VERIFIER_UNAVAILABLE");
      expect(await dying.verify(message, signature, key)).toBe(true);
    } finally {
      await dying.close();
    }
  });

  it("checks a batch smaller than inlineBelow on the calling thread (no thread is involved)", async () => {
    const inline = new RsaVerifyPool({ workerUrl: DYING_WORKER });
    try {
      const signature = Buffer.from(signV3Message(Buffer.from("m"), keys[0]!.privateKey), "base64");
      // A thread would die on this message; checked inline it is just an invalid signature.
      expect(await inline.verify(Buffer.from("die"), signature, keys[0]!.publicKey)).toBe(false);
    } finally {
      await inline.close();
    }
  });

  it("after close, queued and new checks fail with VERIFIER_UNAVAILABLE", async () => {
    const closing = new RsaVerifyPool();
    const message = Buffer.from("m");
    const signature = Buffer.from(signV3Message(message, keys[0]!.privateKey), "base64");
    const queued = closing.verify(message, signature, keys[0]!.publicKey);
    await closing.close();
    expect(await asyncCodeOf(() => queued)).toBe("VERIFIER_UNAVAILABLE");
    expect(await asyncCodeOf(() => closing.verify(message, signature, keys[0]!.publicKey))).toBe(
      "VERIFIER_UNAVAILABLE",
    );
  });

  it("refuses a thread count below 1", () => {
    expect(() => new RsaVerifyPool({ threads: 0 })).toThrow(RangeError);
  });
});

describe("verifyV3InPool", () => {
  it("accepts what verifyV3 accepts and rejects with the same codes", async () => {
    const flipped = Buffer.from(body);
    flipped[3] = (flipped[3] ?? 0) ^ 1;
    const cases: [V3Headers, Buffer][] = [
      [signed(body), body],
      [signed(body), flipped],
      [signed(body, { signature: "WECHATPAY/SIGNTEST/a" }), body],
      [signed(body, { signature: "!" }), body],
      [signed(body, { timestamp: String(Number(TS) - 301) }), body],
      [signed(body, { serial: "PUB_KEY_ID_UNKNOWN" }), body],
    ];
    const codes = await Promise.all(
      cases.map(([headers, payload]) =>
        asyncCodeOf(() => verifyV3InPool(headers, payload, { keys: store, now: NOW, pool })),
      ),
    );
    expect(codes).toEqual(
      cases.map(([headers, payload]) => codeOf(() => verifyV3(headers, payload, { keys: store, now: NOW }))),
    );
    expect(codes).toEqual([
      undefined,
      "SIGNATURE_INVALID",
      "SIGNATURE_PROBE",
      "SIGNATURE_INVALID",
      "TIMESTAMP_SKEW",
      "SERIAL_UNKNOWN",
    ]);
  });
});
