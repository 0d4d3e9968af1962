// A worker process (startWorker, as main.ts starts it) whose apply statements stop right after they commit, so that a
// test can SIGKILL it between the PostgreSQL commit and the add of the event to notify.publish.
//   node --import tsx apps/worker/test/support/apply-crash-process.ts
// Environment: the worker's (DATABASE_URL, REDIS_URL, QUEUE_PREFIX, PUBLISH_EVENTS, …). Prints `committed <notification
// id>` for each payment or refund whose statement committed, then never answers the job that ran it.
import { loadConfig } from "@wpn/config";
import { pino } from "pino";
import { prismaApplyStore } from "../../src/domain/store.ts";
import { startWorker } from "../../src/worker.ts";

/** Reports the commit of `ids`, then holds the job forever: the process is killed here. */
function stopAfterCommit(ids: readonly string[]): Promise<never> {
  for (const id of ids) process.stdout.write(`committed ${id}\n`);
  return new Promise<never>(() => undefined);
}

await startWorker(loadConfig(process.env), {
  logger: pino({ level: "silent" }),
  healthPort: 0,
  applyStore: (db) => {
    const store = prismaApplyStore(db.prisma);
    return {
      payments: async (facts) => {
        await store.payments(facts);
        return stopAfterCommit(facts.map((f) => f.notificationId));
      },
      refund: async (facts) => {
        await store.refund(facts);
        return stopAfterCommit([facts.notificationId]);
      },
    };
  },
});
process.stdout.write("started\n");
