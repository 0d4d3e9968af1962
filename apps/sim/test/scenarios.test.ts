import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCENARIOS } from "../src/scenarios/index.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Receiver, type ReceiverOptions, startReceiver } from "./support/receiver.ts";

const temp = tempKeys();
const receivers: Record<string, Receiver> = {};

/** Receivers that get one thing wrong each. */
const broken: Record<string, Omit<ReceiverOptions, "keys">> = {
  /** Answers 204 to everything, never verifies. */
  acceptsAll: { answer: () => ({ status: 204 }) },
  /** Answers 500 to everything. */
  rejectsAll: { answer: () => ({ status: 500, body: '{"code":"FAIL","message":"down"}' }) },
  /** Verifies, but treats an already seen notification id as an error (409). */
  rejectsDuplicates: {
    answer: (r, all, correct) => {
      const id = r.event?.envelope.id;
      if (id === undefined) return correct;
      const seen = all.slice(0, all.indexOf(r)).some((o) => o.event?.envelope.id === id);
      return seen ? { status: 409, body: '{"code":"FAIL","message":"duplicate"}' } : correct;
    },
  },
  /** Verifies, but refuses every refund (400). */
  rejectsRefunds: {
    answer: (r, _all, correct) =>
      r.event?.kind === "refund" ? { status: 400, body: '{"code":"FAIL","message":"no"}' } : correct,
  },
  /** Configured with the public key only (no platform certificate). */
  publicKeyOnly: { certificate: false },
};

beforeAll(async () => {
  receivers.correct = await startReceiver({ keys: temp.keys });
  for (const [name, opts] of Object.entries(broken))
    receivers[name] = await startReceiver({ keys: temp.keys, ...opts });
});
afterAll(async () => {
  for (const r of Object.values(receivers)) await r.close();
  temp.cleanup();
});

const scenario = (name: string, receiver: string, extra: string[] = []) =>
  runSim([
    "scenario",
    name,
    "--keys",
    temp.keys.dir,
    "--url",
    (receivers[receiver] as Receiver).v3,
    "--time-scale",
    "0.01",
    ...extra,
  ]);

/** Which broken receiver each scenario must catch. */
const caughtBy: Record<string, string[]> = {
  probe: ["acceptsAll", "rejectsAll"],
  replay: ["rejectsDuplicates", "rejectsAll"],
  stale: ["acceptsAll"],
  tamper: ["acceptsAll"],
  switch: ["acceptsAll", "publicKeyOnly"],
  storm: ["rejectsDuplicates"],
  "out-of-order": ["rejectsRefunds"],
};

describe("scenarios", () => {
  it("every scenario has a broken receiver in this test", () => {
    expect(Object.keys(caughtBy).sort()).toEqual(SCENARIOS.map((s) => s.name).sort());
  });

  for (const s of SCENARIOS) {
    it(`${s.name}: a correct receiver passes (exit 0)`, async () => {
      const r = await scenario(s.name, "correct");
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain("A correct receiver must:");
      expect(r.stdout).toContain("PASS");
      expect(r.stdout).not.toContain("✗");
    });

    for (const receiver of caughtBy[s.name] ?? []) {
      it(`${s.name}: a receiver that ${receiver} fails (exit 1)`, async () => {
        const r = await scenario(s.name, receiver);
        expect(r.code, r.stdout).toBe(1);
        expect(r.stdout).toContain("FAIL");
        expect(r.stdout).toContain("✗");
      });
    }
  }

  it("the correct receiver really rejected the probe, stale and tampered deliveries for the right reasons", () => {
    const codes = new Set((receivers.correct as Receiver).received.map((r) => r.error?.code).filter(Boolean));
    for (const code of ["SIGNATURE_PROBE", "TIMESTAMP_SKEW", "SIGNATURE_INVALID", "SERIAL_UNKNOWN"])
      expect(codes).toContain(code);
  });

  it("switch signs with both serials", () => {
    const serials = new Set((receivers.correct as Receiver).received.map((r) => r.headers["wechatpay-serial"]));
    expect(serials).toContain(temp.keys.publicKeyId);
    expect(serials).toContain(temp.keys.certificateSerial);
  });

  it("storm sends --storm-size copies of one notification at once", async () => {
    const correct = receivers.correct as Receiver;
    const before = correct.received.length;
    const r = await scenario("storm", "correct", ["--storm-size", "7", "--json"]);
    expect(r.code).toBe(0);
    const got = correct.received.slice(before);
    expect(got).toHaveLength(7);
    expect(new Set(got.map((g) => g.event?.envelope.id)).size).toBe(1);
    const json = JSON.parse(r.stdout);
    expect(json.passed).toBe(true);
    expect(json.scenarios[0].steps).toHaveLength(7);
  });

  it("all runs every scenario and fails when one fails", async () => {
    const ok = await scenario("all", "correct");
    expect(ok.code, ok.stdout).toBe(0);
    for (const s of SCENARIOS) expect(ok.stdout).toContain(`PASS  ${s.name}`);
    const bad = await scenario("all", "publicKeyOnly");
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain("FAIL  switch");
    expect(bad.stdout).toContain("PASS  probe");
  });

  it("unknown scenario is a usage error naming the choices", async () => {
    const r = await runSim(["scenario", "nope", "--keys", temp.keys.dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("out-of-order");
  });
});
