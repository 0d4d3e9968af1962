import { storeOverflowEvent } from "@wpn/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorker, type WorkerHandle } from "../src/worker.ts";
import { createWorld, quietLog, type World } from "./support/fixtures.ts";

// Events stored in PublishOverflow wait there while PUBLISH_EVENTS=false (no relay runs): the README says to set it back
// before dropping the feature, and to alert on wpn_worker_publish_overflow_rows > 0. Such a worker reported the gauge as
// 0 whatever the table held (the count was only read with PUBLISH_EVENTS=true), so the alert went quiet on exactly the
// events it was there to show.
let world: World;
let worker: WorkerHandle;

beforeAll(async () => {
  world = await createWorld("wovoff");
  await storeOverflowEvent(world.prisma, "v3:1900000109:left-behind-1", { left: "behind" });
  await storeOverflowEvent(world.prisma, "v3:1900000109:left-behind-2", { left: "behind" });
  worker = await startWorker(world.config({ PUBLISH_EVENTS: "false" }), { logger: quietLog, healthPort: 0 });
});
afterAll(async () => {
  await worker?.close();
  await world?.cleanup();
});

describe("wpn_worker_publish_overflow_rows with PUBLISH_EVENTS=false", () => {
  it("counts the stored events still waiting, as /metrics serves it", async () => {
    const text = await (await fetch(`http://127.0.0.1:${worker.healthPort}/metrics`)).text();
    const sample = text.match(/^wpn_worker_publish_overflow_rows (-?\d+)$/m);
    expect(Number(sample?.[1])).toBe(2);
  }, 30_000);
});
