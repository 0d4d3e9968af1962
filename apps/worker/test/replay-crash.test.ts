import { PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replayDeadLetter } from "../src/replay.ts";
import { startWorker } from "../src/worker.ts";
import { orderOf, quietLog, seedOrder, stockOf, v2Payment, type World } from "./support/fixtures.ts";
import { closePipeline, notificationWithEvents, openPipeline, type Pipeline } from "./support/pipeline.ts";
import { spawnReplay } from "./support/replay-process-handle.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A replay whose process dies or pauses in the middle of it (a process of its own, killed with SIGKILL or stopped
 * with SIGSTOP at one point of the replay), and the replay of the same letter that comes after: each replay is
 * recorded once (one REPLAYED event), its job put back once and applied once, and the letter removed.
 */
let pipeline: Pipeline | undefined;
let world: World;
let redis: Redis;
let parseQueue: Queue;
let applyQueue: Queue;
let deadQueue: Queue;
beforeAll(async () => {
  pipeline = await openPipeline("wreplaycrash", { A: 1_000 });
  ({ world, redis, parseQueue, applyQueue, deadQueue } = pipeline);
});
afterAll(() => closePipeline(pipeline));

/** The child replay's claim lasts this long unless renewed, ms (renewed every third of it while the replay runs). */
const CLAIM_MS = 600;
const claimKey = (letterId: string) => `${world.prefix}:${QueueName.Dead}:replaying:${letterId}`;

/** Runs `body` with a worker of this world (unknown-order window 1 s). */
async function withWorker(body: () => Promise<void>): Promise<void> {
  const worker = await startWorker(world.config({ WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "1" }), {
    logger: quietLog,
    healthPort: 0,
  });
  try {
    await body();
  } finally {
    await worker.close();
  }
}

/** A payment dead-lettered by the apply stage (no order within its window), whose order exists now. */
async function deadApplyLetter(): Promise<{ id: string; letterId: string; outTradeNo: string }> {
  const outTradeNo = `T-crash-${Date.now()}`;
  const job = v2Payment(world, { outTradeNo, total: 100 });
  await withWorker(async () => {
    await parseQueue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor("DEAD", async () => (await notificationWithEvents(world, job.id))?.status === "DEAD", 15_000);
  });
  const letters = await deadQueue.getJobs(["waiting"], 0, -1, true);
  const letter = letters.find((l) => l.data?.queue === QueueName.Apply && l.data?.notificationId === job.id);
  await seedOrder(world, { outTradeNo, amountTotal: 100, items: { A: 1 } });
  return { id: job.id, letterId: letter?.id ?? "", outTradeNo };
}

/** The replay as the CLI runs it (claim: the default 60 s). */
const replay = async (letterId: string) =>
  (
    await replayDeadLetter({ connection: redis, prefix: world.prefix, prisma: world.prisma, actor: "test" }, letterId)
  )[0];

/** What the dashboard and the queues show of the notification `id` and its letter. */
async function stateOf(id: string, letterId: string) {
  const row = await notificationWithEvents(world, id);
  const kinds = row?.events.map((e) => e.kind) ?? [];
  return {
    status: row?.status,
    replayed: kinds.filter((k) => k === "REPLAYED").length,
    replayFailed: kinds.filter((k) => k === "REPLAY_FAILED").length,
    letter: (await deadQueue.getJob(letterId)) !== undefined,
    job: (await applyQueue.getJobState(id)) as string,
  };
}

const claimExpired = (letterId: string) =>
  waitFor("the claim's expiry", async () => (await redis.exists(claimKey(letterId))) === 0, 5_000);

/** Applies what waits in notify.apply; the notification APPLIED, its stock taken once. */
async function appliedOnce(id: string, outTradeNo: string, stockBefore: number): Promise<void> {
  await withWorker(async () => {
    await waitFor("APPLIED", async () => (await notificationWithEvents(world, id))?.status === "APPLIED", 15_000);
  });
  expect((await orderOf(world.prisma, outTradeNo)).status).toBe("SUCCESS");
  expect((await stockOf(world.prisma)).A).toBe(stockBefore - 1);
}

describe("a replay whose process is killed (SIGKILL)", () => {
  it("between the record and the add: the next replay completes it, recorded once, applied once", async () => {
    const { id, letterId, outTradeNo } = await deadApplyLetter();
    const stock = (await stockOf(world.prisma)).A ?? 0;
    const crashed = spawnReplay(world.env, letterId, "after-record", CLAIM_MS);
    await crashed.stopped;
    crashed.child.kill("SIGKILL");
    expect((await crashed.ended).signal).toBe("SIGKILL");

    // What the crash leaves: the replay recorded, no job back, the letter kept, the claim expiring.
    expect(await stateOf(id, letterId)).toEqual({
      status: "PROCESSING",
      replayed: 1,
      replayFailed: 0,
      letter: true,
      job: "unknown",
    });
    expect(await redis.pttl(claimKey(letterId))).toBeGreaterThan(0);
    expect(await replay(letterId)).toMatchObject({ status: "in-flight" });

    await claimExpired(letterId);
    const again = await replay(letterId);
    expect({ outcome: again?.status, ...(await stateOf(id, letterId)) }).toEqual({
      outcome: "resumed",
      status: "PROCESSING",
      replayed: 1,
      replayFailed: 0,
      letter: false,
      job: "waiting",
    });
    await appliedOnce(id, outTradeNo, stock);
  }, 60_000);

  it("between the add and the letter's removal: the next replay removes the letter, nothing recorded or run again", async () => {
    const { id, letterId, outTradeNo } = await deadApplyLetter();
    const stock = (await stockOf(world.prisma)).A ?? 0;
    const crashed = spawnReplay(world.env, letterId, "before-letter-removal", CLAIM_MS);
    await crashed.stopped;
    crashed.child.kill("SIGKILL");
    await crashed.ended;
    expect(await stateOf(id, letterId)).toEqual({
      status: "PROCESSING",
      replayed: 1,
      replayFailed: 0,
      letter: true,
      job: "waiting",
    });
    // The job that was put back runs.
    await appliedOnce(id, outTradeNo, stock);
    const finishedOn = (await applyQueue.getJob(id))?.finishedOn;

    await claimExpired(letterId);
    const again = await replay(letterId);
    expect({ outcome: again?.status, ...(await stateOf(id, letterId)) }).toEqual({
      outcome: "resumed",
      status: "APPLIED",
      replayed: 1,
      replayFailed: 0,
      letter: false,
      job: "completed",
    });
    // Not run again.
    expect((await applyQueue.getJob(id))?.finishedOn).toBe(finishedOn);
  }, 60_000);
});

describe("a replay paused (SIGSTOP) longer than its claim lasts, while a second replay takes the letter", () => {
  /**
   * A replay stopped at `point` and paused past its claim while a second replay takes the letter; then it goes on.
   * Returns both outcomes with the state they leave, once the job put back has applied the payment once.
   */
  async function pausedPastClaim(point: "after-record" | "before-record") {
    const { id, letterId, outTradeNo } = await deadApplyLetter();
    const stock = (await stockOf(world.prisma)).A ?? 0;
    const first = spawnReplay(world.env, letterId, point, CLAIM_MS);
    await first.stopped;
    first.child.kill("SIGSTOP");
    await claimExpired(letterId);
    const second = await replay(letterId);
    first.child.kill("SIGCONT");
    first.goOn();
    const { outcome } = await first.ended;
    const seen = { first: outcome?.status, second: second?.status, ...(await stateOf(id, letterId)) };
    await appliedOnce(id, outTradeNo, stock);
    return seen;
  }

  it("paused after its record: the second completes that replay, the first stands down; recorded once", async () => {
    expect(await pausedPastClaim("after-record")).toEqual({
      first: "in-flight",
      second: "resumed",
      status: "PROCESSING",
      replayed: 1,
      replayFailed: 0,
      letter: false,
      job: "waiting",
    });
  }, 60_000);

  it("paused before its record: the second replays the letter, the first records nothing when it wakes", async () => {
    expect(await pausedPastClaim("before-record")).toEqual({
      first: "in-flight",
      second: "replayed",
      status: "PROCESSING",
      replayed: 1,
      replayFailed: 0,
      letter: false,
      job: "waiting",
    });
  }, 60_000);
});
