// `npm run db:prune -- --older-than 90d [--dry-run] [--batch 5000]`: deletes settled notifications (APPLIED,
// DUPLICATE, IGNORED) received and last changed before the retention, with their timeline, in batches (see
// packages/db/src/prune.ts). For cron; prints one line per batch and the totals. Exit code 2 for a refused argument.
import { parseArgs } from "node:util";
import { DEFAULT_DATABASE_URL, readEnvironment } from "@wpn/config";
import { createDb, type PruneCounts, PruneError, parseRetention, pruneNotifications } from "@wpn/db";

const USAGE = "usage: npm run db:prune -- --older-than <days>d [--dry-run] [--batch <notifications>]";

const describe = (counts: PruneCounts) => {
  const byStatus = Object.entries(counts.notifications).map(([status, n]) => `${status} ${n}`);
  const notifications = Object.values(counts.notifications).reduce((sum, n) => sum + n, 0);
  return `${notifications} notification(s) (${byStatus.join(", ") || "none"}) and ${counts.events} event(s)`;
};

let options: { olderThanMs: number; batchSize: number; dryRun: boolean };
try {
  const { values } = parseArgs({
    options: {
      "older-than": { type: "string" },
      "dry-run": { type: "boolean", default: false },
      batch: { type: "string", default: "5000" },
    },
  });
  if (values["older-than"] === undefined) throw new PruneError("PRUNE_RETENTION_INVALID", "--older-than is required");
  options = {
    olderThanMs: parseRetention(values["older-than"]),
    batchSize: /^\d+$/.test(values.batch) ? Number(values.batch) : Number.NaN,
    dryRun: values["dry-run"],
  };
} catch (error) {
  console.error(`${(error as Error).message}\n${USAGE}`);
  process.exit(2);
}

const db = createDb({
  url: readEnvironment().DATABASE_URL ?? DEFAULT_DATABASE_URL,
  poolMax: 1,
  applicationName: "db:prune",
});
try {
  const result = await pruneNotifications(db.prisma, {
    ...options,
    onBatch: (batch) => console.log(`deleted ${describe(batch)}`),
  });
  const cutoff = result.cutoff.toISOString();
  console.log(
    result.dryRun
      ? `dry run: would delete ${describe(result)} received and last changed before ${cutoff}`
      : `deleted ${describe(result)} received and last changed before ${cutoff}, in ${result.batches} batch(es)`,
  );
} catch (error) {
  if (!(error instanceof PruneError)) throw error;
  console.error(`${error.message}\n${USAGE}`);
  process.exitCode = 2;
} finally {
  await db.close();
}
