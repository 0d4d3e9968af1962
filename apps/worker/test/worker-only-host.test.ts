import { createQueue, createRedisConnection, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createWorld, orderOf, seedOrder, v3Payment, type World } from "./support/fixtures.ts";
import { spawnWorker, stopWorker } from "./support/processes.ts";
import { waitFor } from "./support/wait.ts";

/**
 * A host that runs only workers holds the APIv3 key (to decrypt) but none of the files the ingress verifies
 * signatures with: the ingress verified every notification before enqueueing it, and a worker never verifies an
 * APIv3 signature. Such a host used to be refused at start-up ("WECHATPAY_PUBLIC_KEY_ID is required unless …").
 */
let world: World;

beforeAll(async () => {
  world = await createWorld("worker_only");
  await world.prisma.sku.create({ data: { id: "W1", name: "SKU W1", stock: 5 } });
});

afterAll(async () => {
  await world?.cleanup();
});

it("starts and applies an APIv3 payment without a public key, platform certificate or download setting", {
  timeout: 60_000,
}, async () => {
  const outTradeNo = await seedOrder(world, { items: { W1: 1 }, amountTotal: 100 });
  const job = v3Payment(world, { outTradeNo, total: 100 });
  const redis = createRedisConnection(TEST_REDIS_URL, "admin");
  const queue = createQueue(QueueName.Parse, redis, world.prefix);
  // Empty counts as unset, and overrides a developer's .env in the repository root.
  const worker = spawnWorker(
    { ...world.env, WECHATPAY_PUBLIC_KEY_ID: "", WECHATPAY_PUBLIC_KEY_PATH: "", WECHATPAY_PLATFORM_CERT_PATHS: "" },
    0,
  );
  try {
    await queue.add(PARSE_JOB_NAME, job, { jobId: job.id });
    await waitFor(
      "the order paid (SUCCESS)",
      async () => {
        if (worker.child.exitCode !== null) throw new Error(`worker exited early:\n${worker.output()}`);
        return (await orderOf(world.prisma, outTradeNo)).status === "SUCCESS";
      },
      30_000,
      100,
    );
  } finally {
    const exit = await stopWorker(worker);
    await queue.close();
    redis.disconnect();
    expect(exit, worker.output()).toEqual({ code: 0, signal: null });
  }
});
