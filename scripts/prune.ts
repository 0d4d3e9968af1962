// `npm run db:prune -- --older-than 90d [--dry-run] [--batch 5000]`: deletes settled notifications (APPLIED,
// DUPLICATE, IGNORED) received and last changed before the retention, with their timeline, in batches (see
// packages/db/src/prune.ts). For cron; prints one line per batch and the totals. Exit code 2 for a refused argument,
// 78 for a refused DATABASE_URL, 1 (with one line, or the steps for a login PostgreSQL refused) for a failure.
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { DEFAULT_DATABASE_URL, loadDatabaseUrl, readEnvironment } from "@wpn/config";
import { createDb, type Db, type PruneCounts, PruneError, parseRetention, pruneNotifications } from "@wpn/db";
import { exitOnFailure } from "./database-errors.ts";

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

const env = readEnvironment();
// Quoted back in a failure's explanation even when the setting itself was refused.
let url = env.DATABASE_URL || DEFAULT_DATABASE_URL;
let db: Db | undefined;
try {
  url = loadDatabaseUrl(env);
  db = createDb({ url, poolMax: 1, applicationName: "db:prune" });
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
  await db?.close();
  if (error instanceof PruneError) {
    console.error(`${error.message}\n${USAGE}`);
    process.exit(2);
  }
  exitOnFailure(error, { databaseUrl: url, osUser: userInfo().username, rerun: "npm run db:prune" }, env);
}
await db.close();
