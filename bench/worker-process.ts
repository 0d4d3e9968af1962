// One benchmark worker process: the production worker (`startWorker`, as apps/worker/src/main.ts runs it),
// with the apply stage's payment store either as shipped (`prisma`: one statement through Prisma per batch of
// concurrent payments) or the raw-pg baseline (`pg`: one statement-by-statement transaction per payment).
// Usage: tsx bench/worker-process.ts prisma|pg
import { loadConfigOrExit, readEnvironment } from "@wpn/config";
import { prismaApplyStore } from "../apps/worker/src/domain/store.ts";
import { createLogger } from "../apps/worker/src/logger.ts";
import { startWorker } from "../apps/worker/src/worker.ts";
import { baselinePayments } from "./worker-baseline.ts";

const impl = process.argv[2];
if (impl !== "prisma" && impl !== "pg") {
  process.stderr.write("usage: worker-process.ts prisma|pg\n");
  process.exit(64);
}
const config = loadConfigOrExit(readEnvironment());
const worker = await startWorker(config, {
  logger: createLogger(config.LOG_LEVEL, { workerIndex: config.WORKER_INDEX, impl }),
  ...(impl === "pg"
    ? {
        // Payments (all the benchmark sends) go through the baseline; refunds keep the production statement.
        applyStore: (db) => ({
          ...prismaApplyStore(db.prisma),
          payments: (facts) => baselinePayments(db.pool, facts),
        }),
      }
    : {}),
});
process.on("SIGTERM", () => {
  worker.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
