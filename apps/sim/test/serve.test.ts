import { testRsaKeyPair } from "@wpn/testing";
import {
  buildAuthorization,
  downloadCertificates,
  isWechatPayError,
  KeyStore,
  loadCertificate,
  readV3Headers,
  verifyV3,
} from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeApi, startFakeApi } from "../src/fake-api.ts";
import { appendJournal } from "../src/journal.ts";
import { runSim, tempKeys } from "./support/cli.ts";

const temp = tempKeys();
const { keys } = temp;
const merchant = testRsaKeyPair();
const merchantSerialNo = "3775B6A45ACD588826D15E583A95F5DD00000000";
let api: FakeApi;
let strict: FakeApi;

beforeAll(async () => {
  api = await startFakeApi({ keys });
  strict = await startFakeApi({ keys, merchantPublicKey: merchant.publicKey });
  const at = new Date().toISOString();
  appendJournal(keys.dir, [
    {
      type: "pay",
      at,
      api: "v3",
      mchid: keys.mchid,
      appid: keys.appid,
      outTradeNo: "Q-PAID",
      transactionId: "4200000000000000000000000123",
      amount: 880,
      openid: "oPayer",
      successTime: at,
      notificationId: "n1",
    },
    { type: "close", at, mchid: keys.mchid, appid: keys.appid, outTradeNo: "Q-CLOSED", amount: 100 },
    {
      type: "refund",
      at,
      api: "v3",
      mchid: keys.mchid,
      outTradeNo: "Q-PAID",
      transactionId: "4200000000000000000000000123",
      outRefundNo: "R-1",
      refundId: "50000000000000000000000000001",
      total: 880,
      refund: 80,
      status: "SUCCESS",
      successTime: at,
      notificationId: "n2",
    },
  ]);
});
afterAll(async () => {
  await api.close();
  await strict.close();
  temp.cleanup();
});

const download = (baseUrl: string, overrides: Partial<Parameters<typeof downloadCertificates>[0]> = {}) =>
  downloadCertificates({
    baseUrl,
    mchid: keys.mchid,
    merchantSerialNo,
    merchantPrivateKey: merchant.privateKey,
    apiV3Key: Buffer.from(keys.apiV3Key, "utf8"),
    ...overrides,
  });

async function get(
  base: string,
  path: string,
  opts: { auth?: boolean; serial?: string; signer?: typeof merchant.privateKey } = {},
) {
  const headers: Record<string, string> = {};
  if (opts.auth !== false) {
    headers.Authorization = buildAuthorization({
      mchid: keys.mchid,
      serialNo: merchantSerialNo,
      privateKey: opts.signer ?? merchant.privateKey,
      method: "GET",
      urlPath: path,
    });
  }
  if (opts.serial) headers["Wechatpay-Serial"] = opts.serial;
  const res = await fetch(`${base}${path}`, { headers });
  const raw = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    headers: Object.fromEntries(res.headers.entries()),
    raw,
    json: JSON.parse(raw.toString("utf8")),
  };
}

function certStore(): KeyStore {
  const store = new KeyStore();
  store.addCertificate(keys.certificatePem);
  return store;
}

describe("fake WeChat Pay API", () => {
  it("GET /v3/certificates passes @wpn/wechatpay downloadCertificates (decrypted, serial checked, signature verified)", async () => {
    const certs = await download(api.url);
    expect(certs).toHaveLength(1);
    expect(certs[0]?.serial).toBe(keys.certificateSerial);
    expect(certs[0]?.pem).toBe(loadCertificate(keys.certificatePem).pem);
    const raw = await get(api.url, "/v3/certificates");
    const entry = raw.json.data[0];
    expect(entry.encrypt_certificate.associated_data).toBe("certificate");
    expect(entry.encrypt_certificate.algorithm).toBe("AEAD_AES_256_GCM");
    expect(entry.effective_time).toMatch(/\+08:00$/);
    expect(raw.headers["wechatpay-serial"]).toBe(keys.certificateSerial);
  });

  it("downloadCertificates fails with the wrong APIv3 key or another merchant", async () => {
    for (const overrides of [{ apiV3Key: Buffer.from("x".repeat(32)) }, { mchid: "1999999999" }]) {
      try {
        await download(api.url, overrides);
        expect.unreachable();
      } catch (err) {
        expect(isWechatPayError(err) && err.code).toBe("CERT_DOWNLOAD_FAILED");
      }
    }
  });

  it("order query answers from the journal, signed with the platform certificate", async () => {
    const paid = await get(api.url, `/v3/pay/transactions/out-trade-no/Q-PAID?mchid=${keys.mchid}`);
    expect(paid.status).toBe(200);
    verifyV3(readV3Headers(paid.headers), paid.raw, { keys: certStore() });
    expect(paid.json).toMatchObject({
      out_trade_no: "Q-PAID",
      transaction_id: "4200000000000000000000000123",
      trade_state: "REFUND",
      amount: { total: 880, currency: "CNY" },
      payer: { openid: "oPayer" },
    });
    const byId = await get(api.url, `/v3/pay/transactions/id/4200000000000000000000000123?mchid=${keys.mchid}`);
    expect(byId.json.out_trade_no).toBe("Q-PAID");
    const closed = await get(api.url, `/v3/pay/transactions/out-trade-no/Q-CLOSED?mchid=${keys.mchid}`);
    expect(closed.json.trade_state).toBe("CLOSED");
    expect(closed.json.transaction_id).toBeUndefined();
    const unknown = await get(api.url, `/v3/pay/transactions/out-trade-no/NOPE?mchid=${keys.mchid}`);
    expect(unknown.status).toBe(404);
    expect(unknown.json.code).toBe("ORDER_NOT_EXIST");
    verifyV3(readV3Headers(unknown.headers), unknown.raw, { keys: certStore() });
    const noMchid = await get(api.url, "/v3/pay/transactions/out-trade-no/Q-PAID");
    expect(noMchid.status).toBe(400);
  });

  it("refund query answers from the journal", async () => {
    const r = await get(api.url, "/v3/refund/domestic/refunds/R-1");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ out_refund_no: "R-1", status: "SUCCESS", amount: { total: 880, refund: 80 } });
    const missing = await get(api.url, "/v3/refund/domestic/refunds/R-404");
    expect(missing.status).toBe(404);
    expect(missing.json.code).toBe("RESOURCE_NOT_EXISTS");
  });

  it("another merchant's payment and refund of the same numbers do not replace the simulated merchant's", async () => {
    const other = "1230000109";
    const send = (args: string[]) =>
      runSim([...args, "--keys", keys.dir, "--url", "http://127.0.0.1:9/unreachable", "--no-retry"]);
    // Delivery fails (nothing listens on port 9): the journal records the payment and refund all the same.
    await send(["pay", "--out-trade-no", "Q-SHARED", "--amount", "500"]);
    await send(["refund", "--out-trade-no", "Q-SHARED", "--out-refund-no", "R-SHARED", "--refund-amount", "50"]);
    await send(["pay", "--mchid", other, "--out-trade-no", "Q-SHARED", "--amount", "7"]);
    await send(["refund", "--mchid", other, "--out-trade-no", "Q-SHARED", "--out-refund-no", "R-SHARED"]);
    const order = await get(api.url, `/v3/pay/transactions/out-trade-no/Q-SHARED?mchid=${keys.mchid}`);
    expect(order.status, JSON.stringify(order.json)).toBe(200);
    expect(order.json).toMatchObject({ mchid: keys.mchid, trade_state: "REFUND", amount: { total: 500 } });
    const byId = await get(api.url, `/v3/pay/transactions/id/${order.json.transaction_id}?mchid=${keys.mchid}`);
    expect(byId.status, JSON.stringify(byId.json)).toBe(200);
    expect(byId.json).toMatchObject({ mchid: keys.mchid, out_trade_no: "Q-SHARED" });
    const refund = await get(api.url, "/v3/refund/domestic/refunds/R-SHARED");
    expect(refund.status, JSON.stringify(refund.json)).toBe(200);
    expect(refund.json).toMatchObject({ out_trade_no: "Q-SHARED", amount: { total: 500, refund: 50 } });
  });

  it("a number that is not percent-encoding (a bare %) is the caller's PARAM_ERROR, not a simulator error", async () => {
    for (const path of [
      `/v3/pay/transactions/out-trade-no/Q%zz?mchid=${keys.mchid}`,
      `/v3/pay/transactions/id/42%?mchid=${keys.mchid}`,
      "/v3/refund/domestic/refunds/R%zz",
    ]) {
      const r = await get(api.url, path);
      expect(r.status, `${path}: ${r.raw}`).toBe(400);
      expect(r.json.code, path).toBe("PARAM_ERROR");
      verifyV3(readV3Headers(r.headers), r.raw, { keys: certStore() });
    }
  });

  it("signs with the public key when the request names it in Wechatpay-Serial", async () => {
    const r = await get(api.url, `/v3/pay/transactions/out-trade-no/Q-PAID?mchid=${keys.mchid}`, {
      serial: keys.publicKeyId,
    });
    expect(r.headers["wechatpay-serial"]).toBe(keys.publicKeyId);
    const store = new KeyStore();
    store.addPublicKey(keys.publicKeyId, keys.publicKey);
    verifyV3(readV3Headers(r.headers), r.raw, { keys: store });
  });

  it("requires an Authorization header; with --merchant-key it verifies the request signature", async () => {
    expect((await get(api.url, "/v3/certificates", { auth: false })).status).toBe(401);
    expect((await get(strict.url, "/v3/certificates")).status).toBe(200);
    const other = testRsaKeyPair();
    const forged = await get(strict.url, "/v3/certificates", { signer: other.privateKey });
    expect(forged.status).toBe(401);
    expect(forged.json.code).toBe("SIGN_ERROR");
  });

  it("wechatpay-sim serve prints its URL, serves, and stops on the signal with exit 0", async () => {
    const controller = new AbortController();
    let stdout = "";
    const { main } = await import("../src/cli.ts");
    const done = main(["serve", "--keys", keys.dir, "--port", "0"], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: () => true },
      env: {},
      cwd: temp.dir,
      signal: controller.signal,
    });
    for (let i = 0; i < 100 && !stdout.includes("listening on"); i++) await new Promise((r) => setTimeout(r, 20));
    const url = /listening on (http:\/\/\S+)/.exec(stdout)?.[1];
    expect(url).toBeDefined();
    const certs = await download(url as string);
    expect(certs[0]?.serial).toBe(keys.certificateSerial);
    controller.abort();
    expect(await done).toBe(0);
  });

  it("serve names a bad --port", async () => {
    const r = await runSim(["serve", "--keys", keys.dir, "--port", "99999"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--port");
  });
});
