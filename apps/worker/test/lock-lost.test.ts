import type { Db } from "@wpn/db";
import { APPLY_JOB_NAME, createQueue, createRedisConnection, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { prismaApplyStore } from "../src/domain/store.ts";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, inline, seedOrder, seedSkus, v3Payment, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A worker that lost its jobs' locks while it ran them — stopped (SIGSTOP, a VM pause) past the lock's duration, the
 * jobs given to another worker meanwhile — finds, when it goes on, that BullMQ refuses what it does with them: renewing
 * the lock, moving the job to completed or failed. Harmless (the other run applies the notification, once: the
 * database decides), but BullMQ reports each as a Worker `error` event, and those were logged at error level as
 * WORKER_ERROR — 88 lines in one chaos round, firing error alerts. The lock is taken away here as BullMQ's own tests
 * do: one job's lock key deleted (its lock expired), the other's set to another worker's token (taken over).
 */
let world: World;
let redis: Redis;
let applyQueue: Queue;

beforeAll(async () => {
  world = await createWorld("locklost");
  redis = createRedisConnection(TEST_REDIS_URL, "admin");
  applyQueue = createQueue(QueueName.Apply, redis, world.prefix);
  await seedSkus(world.prisma, { A: 10 });
});
afterAll(async () => {
  await applyQueue?.close();
  redis?.disconnect();
  await world?.cleanup();
});

const LOCK_MESSAGES = /Missing lock for job|Lock mismatch for job|could not renew lock for job/;

it("a job whose lock is gone or taken is logged JOB_LOCK_LOST at warn and counted, not WORKER_ERROR at error", async () => {
  const orders = await Promise.all([1, 2].map(() => seedOrder(world, { amountTotal: 100, items: { A: 1 } })));
  const jobIds: string[] = [];
  for (const outTradeNo of orders) {
    const { applyJob } = await inline(world).parse(v3Payment(world, { outTradeNo, total: 100 }));
    jobIds.push(applyJob!.notificationId);
    await applyQueue.add(APPLY_JOB_NAME, applyJob!, { jobId: applyJob!.notificationId });
  }
  // The payments wait until the locks are gone, as a stopped process's would.
  let entered = false;
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const heldStore = (db: Db) => {
    const store = prismaApplyStore(db.prisma);
    return {
      ...store,
      payments: async (facts: Parameters<typeof store.payments>[0]) => {
        entered = true;
        await released;
        return store.payments(facts);
      },
    };
  };
  const { logger, lines } = capturedLog();
  // Locks renewed every second; no stalled-job check during the test (it would hand the jobs back to this worker).
  const config = world.config({ WORKER_LOCK_DURATION_MS: "2000", WORKER_STALLED_INTERVAL_MS: "600000" });
  const worker = await startWorker(config, { logger, healthPort: 0, applyStore: heldStore });
  const lockLines = () => lines.filter((line) => LOCK_MESSAGES.test(line)).map((line) => JSON.parse(line));
  try {
    await waitFor("both payments running", async () => entered && (await applyQueue.getActiveCount()) === 2);
    const [expired, takenOver] = jobIds.map((id) => `${applyQueue.qualifiedName}:${id}:lock`);
    await redis.del(expired!);
    await redis.set(takenOver!, "another-worker-token");
    // The next renewal fails for both.
    await waitFor("renewal refused", async () => lockLines().length >= 2, 10_000);
    release();
    // Then so does moving each job to completed.
    await waitFor(
      "completion refused",
      async () => lockLines().filter((l) => /moveToFinished/.test(l.err)).length >= 2,
    );
    const logged = lockLines();
    expect(logged.map((l) => l.err).join("\n")).toMatch(/could not renew lock for job/);
    expect(logged.map((l) => l.err).join("\n")).toMatch(/Missing lock for job .*moveToFinished/);
    expect(logged.map((l) => l.err).join("\n")).toMatch(/Lock mismatch for job .*moveToFinished/);
    // Before: {"level":50,"code":"WORKER_ERROR",…}.
    for (const line of logged) {
      expect({ level: line.level, code: line.code, queue: line.queue }).toEqual({
        level: 40,
        code: "JOB_LOCK_LOST",
        queue: QueueName.Apply,
      });
    }
    expect(lines.filter((line) => line.includes('"code":"WORKER_ERROR"'))).toEqual([]);
    const counted = (await worker.metrics.locksLost.get()).values;
    expect(counted.map((v) => [v.labels.queue, v.value])).toEqual([[QueueName.Apply, logged.length]]);
  } finally {
    release();
    await worker.close();
  }
}, 30_000);
