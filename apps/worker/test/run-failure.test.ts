import { Worker } from "bullmq";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { startWorker } from "../src/worker.ts";
import { capturedLog } from "./support/captured-log.ts";
import { createWorld, type World } from "./support/fixtures.ts";
import { waitFor } from "./support/wait.ts";

// A BullMQ Worker whose main loop dies (WORKER_RUN_FAILED) takes no job again while the process goes on: liveness
// must fail and the process be told, so that it is restarted instead of idling as a zombie.
let world: World;
beforeAll(async () => {
  world = await createWorld("wrunfail");
});
afterAll(async () => {
  vi.restoreAllMocks();
  await world?.cleanup();
});

it("a Worker's main loop that dies fails /health/live and is reported once to onRunFailed", async () => {
  // The first Worker started (parse) dies; the apply Worker runs as usual.
  vi.spyOn(Worker.prototype, "run").mockImplementationOnce(() => Promise.reject(new Error("main loop died")));
  const { logger, lines } = capturedLog();
  const failures: unknown[] = [];
  const worker = await startWorker(world.config(), {
    logger,
    healthPort: 0,
    onRunFailed: (error) => failures.push(error),
  });
  try {
    await waitFor("run failure reported", async () => failures.length > 0);
    const live = await fetch(`http://127.0.0.1:${worker.healthPort}/health/live`);
    expect(live.status).toBe(503);
    expect(await live.json()).toEqual({
      status: "failed",
      error: "notify.parse worker stopped: main loop died",
    });
    expect((await fetch(`http://127.0.0.1:${worker.healthPort}/health/ready`)).status).toBe(503);
    expect(failures).toEqual([expect.objectContaining({ message: "main loop died" })]);
    const fatal = lines.map((l) => JSON.parse(l)).filter((l) => l.code === "WORKER_RUN_FAILED");
    expect(fatal).toEqual([expect.objectContaining({ level: 60, queue: "notify.parse" })]);
  } finally {
    await worker.close();
  }
}, 30_000);

it("/health/live answers 200 while the Workers run", async () => {
  const worker = await startWorker(world.config(), { logger: capturedLog().logger, healthPort: 0 });
  try {
    const live = await fetch(`http://127.0.0.1:${worker.healthPort}/health/live`);
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ status: "ok" });
  } finally {
    await worker.close();
  }
}, 30_000);
