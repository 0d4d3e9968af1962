import http from "node:http";
import type { AddressInfo } from "node:net";
import { v2Reply } from "@wpn/wechatpay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { judgeV2, judgeV3, type Outcome, V2_RETRY_DELAYS_S, V3_RETRY_DELAYS_S } from "../src/deliver.ts";
import { findOrder, readJournal } from "../src/journal.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Answer, type Receiver, startReceiver } from "./support/receiver.ts";

const temp = tempKeys();
const keysArgs = ["--keys", temp.keys.dir];
let answer: (() => Answer | undefined) | undefined;
let receiver: Receiver;

beforeAll(async () => {
  receiver = await startReceiver({ keys: temp.keys, answer: () => answer?.() });
});
afterAll(async () => {
  await receiver.close();
  temp.cleanup();
});

const reply = (status: number, body = ""): Outcome => ({ kind: "answer", status, headers: {}, body, latencyMs: 1 });

describe("WeChat's verdict (unit)", () => {
  it("v3: 200/204 received, other statuses and timeouts not; 200 with FAIL warns", () => {
    expect(judgeV3(reply(204)).acknowledged).toBe(true);
    expect(judgeV3(reply(200)).acknowledged).toBe(true);
    const fail200 = judgeV3(reply(200, '{"code":"FAIL","message":"失败"}'));
    expect(fail200.acknowledged).toBe(true);
    expect(fail200.warning).toMatch(/status decides/);
    expect(judgeV3(reply(202)).acknowledged).toBe(false);
    expect(judgeV3(reply(302)).acknowledged).toBe(false);
    expect(judgeV3(reply(401, '{"code":"FAIL","message":"bad sign"}')).reason).toContain("bad sign");
    expect(judgeV3({ kind: "timeout", timeoutMs: 5000, latencyMs: 5000 }).acknowledged).toBe(false);
    const refused = judgeV3({ kind: "network", code: "ECONNREFUSED", message: "x", latencyMs: 1 });
    expect(refused.acknowledged || !refused.network).toBe(false);
  });

  it("v2: only HTTP 200 with the <xml> return_code SUCCESS document, nothing before it", () => {
    expect(judgeV2(reply(200, v2Reply(true))).acknowledged).toBe(true);
    expect(judgeV2(reply(200, `${v2Reply(true)}\n`)).acknowledged).toBe(true);
    expect(judgeV2(reply(200, "<xml><return_code>SUCCESS</return_code></xml>")).acknowledged).toBe(true);
    const nearMisses = [
      reply(200, "SUCCESS"),
      reply(200, "success"),
      reply(200, '{"return_code":"SUCCESS"}'),
      reply(200, `\n${v2Reply(true)}`),
      reply(200, `ok${v2Reply(true)}`),
      reply(200, "<xml><return_code><![CDATA[success]]></return_code></xml>"),
      reply(200, "<xml><return_code><![CDATA[SUCCESS]]></return_code>"),
      reply(200, `${v2Reply(true)}<p>done</p>`),
      reply(200, v2Reply(false, "sign error")),
      reply(200, ""),
      reply(204),
      reply(500, v2Reply(true)),
    ];
    for (const o of nearMisses) expect(judgeV2(o).acknowledged, JSON.stringify(o)).toBe(false);
    expect(judgeV2(reply(200, `\n${v2Reply(true)}`)).reason).toContain("before <xml>");
  });

  it("schedules are WeChat's: v3 24 h 4 min over 15 retries, v2 about 3 h 4 min over 9", () => {
    expect(V3_RETRY_DELAYS_S.length).toBe(15);
    expect(V3_RETRY_DELAYS_S.reduce((a, b) => a + b, 0)).toBe(24 * 3600 + 4 * 60);
    expect(V2_RETRY_DELAYS_S).toEqual([15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600]);
  });
});

describe("pay / refund against a real receiver", () => {
  it("v3 pay: 204 is acknowledged on the first delivery; the receiver verified and decrypted it", async () => {
    answer = undefined;
    const before = receiver.received.length;
    const r = await runSim(["pay", ...keysArgs, "--url", receiver.v3, "--out-trade-no", "PAY-1", "--amount", "2500"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("→ POST");
    expect(r.stdout).toContain("Wechatpay-Signature:");
    expect(r.stdout).toContain("HTTP 204");
    expect(r.stdout).toContain("acknowledged");
    const got = receiver.received.slice(before);
    expect(got).toHaveLength(1);
    const event = got[0]?.event;
    expect(event?.kind).toBe("transaction");
    if (event?.kind !== "transaction") throw new Error("no transaction");
    expect(event.transaction.out_trade_no).toBe("PAY-1");
    expect(event.transaction.amount.total).toBe(2500);
    expect(event.transaction.mchid).toBe(temp.keys.mchid);
    expect(findOrder(temp.keys.dir, temp.keys.mchid, "PAY-1")?.tradeState).toBe("SUCCESS");
  });

  it("v3 pay: 200 with a FAIL body counts as received, with a warning", async () => {
    answer = () => ({ status: 200, body: '{"code":"FAIL","message":"失败"}' });
    const r = await runSim(["pay", ...keysArgs, "--url", receiver.v3, "--json"]);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.acknowledged).toBe(true);
    expect(json.deliveries).toHaveLength(1);
    expect(json.deliveries[0].warning).toMatch(/will NOT redeliver/);
  });

  it("v3 pay: 500 is not acknowledged; --no-retry stops after one delivery with exit 1", async () => {
    answer = () => ({ status: 500, body: '{"code":"FAIL","message":"db down"}' });
    const before = receiver.received.length;
    const r = await runSim(["pay", ...keysArgs, "--url", receiver.v3, "--no-retry"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("NOT acknowledged");
    expect(r.stdout).toContain("db down");
    expect(r.stdout).toContain("WeChat would redeliver in 15s");
    expect(receiver.received.length - before).toBe(1);
  });

  it("redelivers on the schedule (scaled), re-signed, same notification, until acknowledged", async () => {
    let calls = 0;
    answer = () => (++calls <= 2 ? { status: 503 } : undefined);
    const before = receiver.received.length;
    const r = await runSim(["pay", ...keysArgs, "--url", receiver.v3, "--time-scale", "0.01", "--json"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.deliveries.map((d: { answer: { status: number } }) => d.answer.status)).toEqual([503, 503, 204]);
    const got = receiver.received.slice(before);
    expect(got).toHaveLength(3);
    const ids = got.map((g) => JSON.parse(g.body.toString()).id);
    expect(new Set(ids).size).toBe(1);
    expect(got.every((g) => g.body.equals(got[0]?.body as Buffer))).toBe(true);
    expect(new Set(got.map((g) => g.headers["wechatpay-nonce"])).size).toBe(3);
    expect(new Set(got.map((g) => g.headers["wechatpay-signature"])).size).toBe(3);
    expect(got.every((g) => g.error === undefined && g.event !== undefined)).toBe(true);
    // 15 s and 15 s scaled by 0.01: ~300 ms between the first and the third delivery (30 s unscaled). Measured
    // between deliveries, so the CLI process's start-up time on a busy machine is not part of it.
    const span = (got[2]?.at ?? 0) - (got[0]?.at ?? 0);
    expect(span).toBeGreaterThanOrEqual(290);
    expect(span).toBeLessThan(3_000);
  });

  it("gives up after the whole v3 schedule (16 deliveries) with exit 1", async () => {
    answer = () => ({ status: 500 });
    const before = receiver.received.length;
    const r = await runSim(["pay", ...keysArgs, "--url", receiver.v3, "--time-scale", "0.00001"]);
    expect(r.code).toBe(1);
    expect(receiver.received.length - before).toBe(16);
    expect(r.stdout).toContain("not acknowledged after 16 deliveries");
    expect(r.stdout).toContain("redelivery 16 of 16 in 6h");
  });

  it("a slow receiver (past the time limit) is not acknowledged", async () => {
    answer = () => ({ status: 204, delayMs: 400 });
    const r = await runSim(["pay", ...keysArgs, "--url", receiver.v3, "--no-retry", "--timeout-ms", "100"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("no answer within");
  });

  it("an unreachable URL exits 3", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await runSim(["pay", ...keysArgs, "--url", `http://127.0.0.1:${port}/notify/v3`, "--no-retry"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain("ECONNREFUSED");
  });

  it("v3 refund of the paid order: REFUND.SUCCESS with the journal's transaction and amount", async () => {
    answer = undefined;
    const before = receiver.received.length;
    const r = await runSim([
      "refund",
      ...keysArgs,
      "--url",
      receiver.v3,
      "--out-trade-no",
      "PAY-1",
      "--refund-amount",
      "500",
    ]);
    expect(r.code, r.stdout).toBe(0);
    const event = receiver.received[before]?.event;
    if (event?.kind !== "refund") throw new Error(`expected a refund, got ${event?.kind}`);
    expect(event.eventType).toBe("REFUND.SUCCESS");
    expect(event.refund.amount).toMatchObject({ total: 2500, refund: 500 });
    expect(event.refund.transaction_id).toBe(findOrder(temp.keys.dir, temp.keys.mchid, "PAY-1")?.transactionId);
    expect(findOrder(temp.keys.dir, temp.keys.mchid, "PAY-1")?.tradeState).toBe("REFUND");
  });

  it("refund names the flag when the order is unknown", async () => {
    const r = await runSim(["refund", ...keysArgs, "--url", receiver.v3, "--out-trade-no", "NEVER-SEEN"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--amount");
    const over = await runSim([
      "refund",
      ...keysArgs,
      "--url",
      receiver.v3,
      "--out-trade-no",
      "PAY-1",
      "--refund-amount",
      "9999",
    ]);
    expect(over.code).toBe(2);
    expect(over.stderr).toContain("--refund-amount");
  });
});

describe("APIv2 against a real receiver", () => {
  it("pay --v2 MD5 and HMAC-SHA256: verified by the receiver, exact XML answer acknowledged", async () => {
    answer = undefined;
    for (const type of ["MD5", "HMAC-SHA256"]) {
      const before = receiver.received.length;
      const r = await runSim([
        "pay",
        ...keysArgs,
        "--v2",
        "--sign-type",
        type,
        "--url",
        receiver.v2,
        "--out-trade-no",
        `V2-${type}`,
      ]);
      expect(r.code, r.stdout).toBe(0);
      const got = receiver.received[before];
      expect(got?.error).toBeUndefined();
      expect(got?.fields?.out_trade_no).toBe(`V2-${type}`);
      expect(got?.fields?.sign_type).toBe(type === "MD5" ? undefined : type);
    }
  });

  it("pay --v2: a near-miss answer ('SUCCESS' as text) is not acknowledged", async () => {
    answer = () => ({ status: 200, body: "SUCCESS" });
    const r = await runSim(["pay", ...keysArgs, "--v2", "--url", receiver.v2, "--no-retry"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("not the <xml> answer");
  });

  it("v2 redelivery uses a fresh nonce_str and sign for the same transaction", async () => {
    let calls = 0;
    answer = () => (++calls === 1 ? { status: 200, body: v2Reply(false, "busy") } : undefined);
    const before = receiver.received.length;
    const r = await runSim(["pay", ...keysArgs, "--v2", "--url", receiver.v2, "--time-scale", "0.001"]);
    expect(r.code, r.stdout).toBe(0);
    const got = receiver.received.slice(before);
    expect(got).toHaveLength(2);
    expect(got[0]?.fields?.transaction_id).toBe(got[1]?.fields?.transaction_id);
    expect(got[0]?.fields?.nonce_str).not.toBe(got[1]?.fields?.nonce_str);
    expect(got[0]?.fields?.sign).not.toBe(got[1]?.fields?.sign);
    expect(r.stdout).toContain("return_code FAIL");
  });

  it("refund --v2: req_info decrypts at the receiver; --sign-type is refused (no sign on v2 refunds)", async () => {
    answer = undefined;
    const before = receiver.received.length;
    const r = await runSim(["refund", ...keysArgs, "--v2", "--url", receiver.v2, "--out-trade-no", "V2-MD5"]);
    expect(r.code, r.stdout).toBe(0);
    const got = receiver.received[before];
    expect(got?.error).toBeUndefined();
    expect(got?.fields?.out_trade_no).toBe("V2-MD5");
    expect(got?.fields?.refund_status).toBe("SUCCESS");
    expect(got?.body.toString()).not.toContain("<sign>");
    const bad = await runSim(["refund", ...keysArgs, "--v2", "--sign-type", "MD5", "--url", receiver.v2]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--sign-type");
  });

  it("records every payment and refund in the journal", () => {
    const types = readJournal(temp.keys.dir).map((e) => e.type);
    expect(types.filter((t) => t === "pay").length).toBeGreaterThanOrEqual(8);
    expect(types.filter((t) => t === "refund").length).toBe(2);
  });
});

describe("refund without --out-trade-no", () => {
  it("refunds the order paid last (the journal's last payment), not the first one seen", async () => {
    answer = undefined;
    for (const no of ["LATE-A", "LATE-B", "LATE-A"]) {
      const r = await runSim(["pay", ...keysArgs, "--url", receiver.v3, "--out-trade-no", no, "--amount", "100"]);
      expect(r.code, r.stdout).toBe(0);
    }
    const before = receiver.received.length;
    const r = await runSim(["refund", ...keysArgs, "--url", receiver.v3]);
    expect(r.code, r.stdout).toBe(0);
    const event = receiver.received[before]?.event;
    if (event?.kind !== "refund") throw new Error(`expected a refund, got ${event?.kind}`);
    expect(event.refund.out_trade_no).toBe("LATE-A");
  });
});
