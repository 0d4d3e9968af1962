import { APPLY_JOB_NAME, createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, inline, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";
import { zombieTakes } from "./support/zombie.ts";

/**
 * A job that stalled more than WORKER_MAX_STALLED_COUNT times is failed by BullMQ, and the `failed` listener writes its
 * letter (JOB_STALLED_TOO_OFTEN) and marks its notification: within seconds of the failure, on the first try of each
 * write — an audit reported the letter retried for ~5 min first (a test waiting 40 s for it timed out).
 */
let world: World;
let redis: Redis;
beforeAll(async () => {
  world = await createWorld("wstalletter");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
});
afterAll(async () => {
  redis?.disconnect();
  await world?.cleanup();
});

it.each([
  [QueueName.Parse, false],
  [QueueName.Apply, true],
] as const)(
  "%s: the letter of a job that stalled too often lands within 10 s",
  async (stage, hasRow) => {
    const queue = createQueue(stage, redis, world.prefix);
    const dead = createQueue(QueueName.Dead, redis, world.prefix);
    const payment = v3Payment(world, { outTradeNo: `T-stalled-${stage}` });
    const id = payment.id;
    if (stage === QueueName.Parse) await queue.add(PARSE_JOB_NAME, payment, { jobId: id });
    else {
      // Parsed (the row PROCESSING), its apply job queued.
      const { applyJob } = await inline(world).parse(payment);
      await queue.add(APPLY_JOB_NAME, applyJob, { jobId: id });
    }
    await zombieTakes(queue, world.prefix, id);
    const { logger, lines } = capturedLog();
    const worker = await startWorker(
      world.config({ WORKER_MAX_STALLED_COUNT: "0", WORKER_STALLED_INTERVAL_MS: "500" }),
      { logger, healthPort: 0 },
    );
    try {
      const letter = await waitFor(
        "the letter",
        async () => (await dead.getJobs(["waiting"], 0, -1)).find((l) => l.data.notificationId === id),
        10_000,
      );
      // The order number as every other letter of the stage has it (an apply job carries it; a parse job has not
      // opened its notification), for the dashboard's dead-letter list and a search of the logs by order.
      const outTradeNo = stage === QueueName.Apply ? `T-stalled-${stage}` : null;
      // Its one run (the zombie's) is its one attempt, which BullMQ counted when it failed the job.
      expect(letter.data).toMatchObject({ queue: stage, code: "JOB_STALLED_TOO_OFTEN", outTradeNo, attemptsMade: 1 });
      expect(await queue.getJobState(id)).toBe("failed");
      const row = await waitFor(
        "the row marked",
        async () => {
          const n = await world.prisma.notification.findUnique({ where: { id }, include: { events: true } });
          return n === null ? !hasRow && "no row" : n.status === "DEAD" && n;
        },
        2_000,
      );
      if (hasRow) {
        expect(row).toMatchObject({ status: "DEAD", errorCode: "JOB_STALLED_TOO_OFTEN" });
        expect(typeof row === "object" && row.events.find((e) => e.kind === "DEAD_LETTERED")?.detail).toMatchObject({
          code: "JOB_STALLED_TOO_OFTEN",
          attempt: 1,
        });
      }
      const codes = () => lines.map((l) => (JSON.parse(l) as { code?: string }).code);
      // Logged "dead-lettered" once the marking is done (at once for a parse job that recorded no row).
      await waitFor("dead-lettered", async () => codes().includes("JOB_STALLED_TOO_OFTEN"), 2_000);
      expect(codes().filter((c) => c === "DEAD_LETTER_RETRY" || c === "DEAD_NOT_RECORDED")).toEqual([]);
      // A job line: queue, jobId, attempt, notificationId and outTradeNo, as the README promises of every one.
      const line = lines.map((l) => JSON.parse(l)).find((l) => l.code === "JOB_STALLED_TOO_OFTEN");
      expect(line).toMatchObject({ queue: stage, jobId: id, attempt: 1, notificationId: id, outTradeNo });
    } finally {
      await worker.close();
      await Promise.all([queue.close(), dead.close()]);
    }
  },
  30_000,
);
