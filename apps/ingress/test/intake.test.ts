import { NOTIFICATION_ID_MAX_LENGTH, type ParseJob } from "@wpn/queue";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import type { EnqueueBatcher, SubmitOutcome } from "../src/enqueue/batcher.ts";
import { Intake } from "../src/enqueue/intake.ts";
import { createMetrics } from "../src/metrics.ts";

/** A batcher whose submits stay open until the test settles them by name (the last part of the id, see `id`). */
function heldBatcher() {
  const open = new Map<string, { resolve(o: SubmitOutcome): void; reject(e: unknown): void }>();
  const batcher = {
    submit: (id: string) =>
      new Promise<SubmitOutcome>((resolve, reject) => open.set(id.slice(id.lastIndexOf(":") + 1), { resolve, reject })),
  } as unknown as EnqueueBatcher;
  return { batcher, open };
}

/** A usable notification id named `name`. */
const id = (name: string) => `v3:1900000109:${name}`;

const job = {} as ParseJob;
const ready = { status: "ready" } as Redis;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What became of an accept, and when (performance.now() ms). */
interface Settled {
  outcome?: SubmitOutcome;
  code?: string;
  at: number;
}
const outcomeOf = (promise: Promise<SubmitOutcome>): Promise<Settled> =>
  promise.then(
    (outcome) => ({ outcome, at: performance.now() }),
    (error: { code?: string }) => ({ code: error.code, at: performance.now() }),
  );

describe("Intake: what is left of a request's answer budget", () => {
  it("a request that spent long before its enqueue is bounded by what is left, the others by the timeout", async () => {
    const { batcher, open } = heldBatcher();
    const T = 1_500;
    const intake = new Intake(batcher, ready, T, createMetrics({ defaultMetrics: false }));
    const started = performance.now();
    const late = outcomeOf(intake.accept("v3", id("late"), job, 400));
    const usual = outcomeOf(intake.accept("v3", id("usual"), job));
    const answered = outcomeOf(intake.accept("v3", id("answered"), job, 300));
    open.get("answered")?.resolve({ kind: "enqueued" });
    expect((await answered).outcome).toEqual({ kind: "enqueued" });
    const lateSettled = await late;
    expect(lateSettled.code).toBe("QUEUE_TIMEOUT");
    expect(lateSettled.at - started).toBeGreaterThanOrEqual(395);
    expect(lateSettled.at - started).toBeLessThan(T - 300);
    const usualSettled = await usual;
    expect(usualSettled.code).toBe("QUEUE_TIMEOUT");
    expect(usualSettled.at - started).toBeGreaterThanOrEqual(T - 5);
    // Nothing left at all: refused at once, never 2xx.
    expect((await outcomeOf(intake.accept("v3", id("none"), job, -50))).code).toBe("QUEUE_TIMEOUT");
  });
});

describe("Intake: one deadline timer for every waiting accept", () => {
  it("fails each unanswered accept at its own deadline, answered ones before and after it are unaffected", async () => {
    const { batcher, open } = heldBatcher();
    // Timeout T, accepts GAP apart: each deadline is T after its accept (a at T, c at T + GAP, d at T + 2 GAP),
    // where one timer chained from expiry to expiry would give c at ≥ 2T and d at ≥ 3T. Seconds, not tens of ms,
    // so a test process descheduled for most of a second still tells the two apart.
    const T = 1_000;
    const GAP = 300;
    const intake = new Intake(batcher, ready, T, createMetrics({ defaultMetrics: false }));
    const started = performance.now();
    const a = outcomeOf(intake.accept("v3", id("a"), job));
    await sleep(GAP);
    const b = outcomeOf(intake.accept("v3", id("b"), job));
    const c = outcomeOf(intake.accept("v3", id("c"), job));
    await sleep(GAP);
    const d = outcomeOf(intake.accept("v3", id("d"), job));
    // b is answered in time; a, c and d never are.
    open.get("b")?.resolve({ kind: "enqueued" });
    const [ra, rb, rc, rd] = await Promise.all([a, b, c, d]);
    expect([ra.code, rb.outcome, rc.code, rd.code]).toEqual([
      "QUEUE_TIMEOUT",
      { kind: "enqueued" },
      "QUEUE_TIMEOUT",
      "QUEUE_TIMEOUT",
    ]);
    // Each timed out T after its own accept (never before; timer resolution ~1 ms), and not a whole timeout after
    // the previous expiry; the upper bounds stay just below the chained timer's 2T and 3T.
    expect(ra.at - started).toBeGreaterThanOrEqual(T - 5);
    expect(ra.at - started).toBeLessThan(2 * T - 5);
    expect(rc.at - started).toBeGreaterThanOrEqual(T + GAP - 5);
    expect(rd.at - started).toBeGreaterThanOrEqual(T + 2 * GAP - 5);
    expect(rd.at - started).toBeLessThan(3 * T - 10);
    // A confirmation arriving after the timeout changes nothing (the resend will find the job or its receipt).
    open.get("a")?.resolve({ kind: "enqueued" });
    open.get("c")?.reject(new Error("late failure"));
    await sleep(10);
  });

  it("passes the batcher's outcome or error through and counts duplicates", async () => {
    const { batcher, open } = heldBatcher();
    const metrics = createMetrics({ defaultMetrics: false });
    const intake = new Intake(batcher, ready, 1_000, metrics);
    const dup = intake.accept("v3", id("x"), job);
    const failed = intake.accept("v3", id("y"), job);
    open.get("x")?.resolve({ kind: "duplicate", via: "receipt" });
    const failure = new Error("redis went away");
    open.get("y")?.reject(failure);
    expect(await dup).toEqual({ kind: "duplicate", via: "receipt" });
    await expect(failed).rejects.toBe(failure);
    expect(await metrics.registry.getSingleMetricAsString("wpn_ingress_dedupe_hits_total")).toContain(
      'api="v3",via="receipt"} 1',
    );
  });

  it("refuses ids not of our notification forms and a Redis that is not ready without submitting", async () => {
    const { batcher, open } = heldBatcher();
    const intake = new Intake(batcher, ready, 1_000, createMetrics({ defaultMetrics: false }));
    // isNotificationId of @wpn/queue, not the lookups' isUsableJobId: a bare WeChat id is a job id an older ingress
    // made, never one this ingress makes.
    for (const bad of ["12345", "wait", "meta", "v2:refund:a:b", "3119dfba-e649-5eec-ab1e-3412bc4d2e17"]) {
      await expect(intake.accept("v3", bad, job), bad).rejects.toMatchObject({ code: "PAYLOAD_INVALID" });
    }
    const down = new Intake(
      batcher,
      { status: "reconnecting" } as Redis,
      1_000,
      createMetrics({ defaultMetrics: false }),
    );
    await expect(down.accept("v3", id("ok-id"), job)).rejects.toMatchObject({ code: "QUEUE_UNAVAILABLE" });
    expect(open.size).toBe(0);
  });

  it("refuses an id longer than the workers' job schemas accept, without submitting; one of exactly the limit goes", async () => {
    // Queued, such an id was acknowledged and then refused by every worker (JOB_INVALID: dead-lettered, and again on
    // every replay), so WeChat had its 2xx and the notification was never applied.
    const { batcher, open } = heldBatcher();
    const intake = new Intake(batcher, ready, 1_000, createMetrics({ defaultMetrics: false }));
    const atLimit = (api: "v3" | "v2", extra: number) => {
      const head = api === "v3" ? "v3:1900000109:" : "v2:refund:1900000109.";
      return head + "7".repeat(NOTIFICATION_ID_MAX_LENGTH - head.length + extra);
    };
    for (const api of ["v3", "v2"] as const) {
      const over = atLimit(api, 1);
      expect(over).toHaveLength(NOTIFICATION_ID_MAX_LENGTH + 1);
      await expect(intake.accept(api, over, job), over).rejects.toMatchObject({ code: "PAYLOAD_INVALID" });
    }
    expect(open.size).toBe(0);
    const longest = intake.accept("v3", atLimit("v3", 0), job);
    expect(open.size).toBe(1);
    open.get("7".repeat(NOTIFICATION_ID_MAX_LENGTH - "v3:1900000109:".length))?.resolve({ kind: "enqueued" });
    expect(await longest).toEqual({ kind: "enqueued" });
  });
});
