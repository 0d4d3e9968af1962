// `npm run db:prune -- --older-than 90d [--dry-run] [--batch 5000]`: deletes settled notifications (APPLIED,
// DUPLICATE, IGNORED) received and last changed before the retention, with their timeline, in batches, then the
// dead-letter replay records as old whose letter is gone (see packages/db/src/prune.ts). It first lists the dead
// letters in the workers' Redis (REDIS_URL, QUEUE_PREFIX): nothing a waiting letter names is deleted. For cron; prints
// one line per batch and the totals; `--help` prints the usage. Exit code 2 for a refused argument (PRUNE_ARGUMENT_INVALID), 78 for a refused DATABASE_URL, REDIS_URL or
// QUEUE_PREFIX, 1 (with one line, or the steps for a login PostgreSQL refused) for a failure — PRUNE_LETTERS_UNREADABLE
// when Redis could not be read, DB_NOT_MIGRATED when the database lacks committed migrations, before anything was deleted.
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { DEFAULT_DATABASE_URL, loadDatabaseUrl, loadQueueSettings, readEnvironmentOrExit } from "@wpn/config";
import {
  createDb,
  type Db,
  MIGRATE_CONNECT_TIMEOUT_MS,
  MIN_RETENTION_DAYS,
  namedConnectTimeout,
  type PruneCounts,
  PruneError,
  parseRetention,
  pruneNotifications,
  verifyMigrations,
  type WaitingLetters,
} from "@wpn/db";
import { createRedisConnection, readWaitingLetters } from "@wpn/queue";
import { exitOnFailure } from "./database-errors.ts";

const USAGE = "usage: npm run db:prune -- --older-than <days>d [--dry-run] [--batch <notifications>]";

const describe = (counts: PruneCounts) => {
  const byStatus = Object.entries(counts.notifications).map(([status, n]) => `${status} ${n}`);
  const notifications = Object.values(counts.notifications).reduce((sum, n) => sum + n, 0);
  return `${notifications} notification(s) (${byStatus.join(", ") || "none"}) and ${counts.events} event(s)`;
};

const HELP = `${USAGE}
Deletes settled notifications (APPLIED, DUPLICATE, IGNORED) received and last changed more than <days> ago
(at least ${MIN_RETENTION_DAYS} days: retried jobs still need the row until then), with their timeline, <notifications> at a time
(default 5000), then the dead-letter replay records as old whose letter is gone; nothing a dead letter waiting in
Redis names. --dry-run only counts.
Settings: DATABASE_URL, REDIS_URL, QUEUE_PREFIX (.env.example; README.md, "Configuration").
Exit codes: 0 done, 1 failed (nothing or only whole batches deleted), 2 a refused argument, 78 a refused setting.`;

/** The command line; one parseArgs refuses (an option it does not take, a value where none goes, a stray word) ends here. */
function commandLine() {
  try {
    return parseArgs({
      options: {
        "older-than": { type: "string" },
        "dry-run": { type: "boolean", default: false },
        batch: { type: "string", default: "5000" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    console.error(`PRUNE_ARGUMENT_INVALID: ${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const { values } = commandLine();
if (values.help) {
  console.log(HELP);
  process.exit(0);
}

let options: { olderThanMs: number; batchSize: number; dryRun: boolean };
try {
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

/** Redis could not be listed: which letters wait is unknown, so nothing can be told safe to delete. */
class LettersUnreadableError extends Error {
  readonly code = "PRUNE_LETTERS_UNREADABLE";
}

/** The dead letters waiting in the workers' Redis, read once before the prune deletes anything. */
async function waitingLetters(redisUrl: string, prefix: string): Promise<WaitingLetters> {
  // No reconnecting: BullMQ waits for a connection that is not ready yet until it is, so a Redis that is down would
  // hold a cron run forever; this one fails at once and the next run tries again.
  const redis = createRedisConnection(redisUrl, "admin", { retryStrategy: () => null });
  // ioredis reports a refused connection here too; the listing's own rejection says it.
  redis.on("error", () => undefined);
  try {
    return await readWaitingLetters(redis, prefix);
  } catch (error) {
    const where = `${new URL(redisUrl).host}, QUEUE_PREFIX ${prefix}`;
    throw new LettersUnreadableError(
      `PRUNE_LETTERS_UNREADABLE: the dead letters in Redis (${where}) could not be listed ` +
        `(${error instanceof Error ? error.message : String(error)}); nothing was deleted: a notification or replay ` +
        "record a waiting letter still needs could not be told from one nobody needs. Run it again once Redis answers",
    );
  } finally {
    redis.disconnect();
  }
}

/**
 * The apps' start-up check (it only reads): a database the migrations have not reached is DB_NOT_MIGRATED naming them
 * and `npm run db:migrate`, not PostgreSQL's 42P01 for the first table the prune reads. A role that may not read
 * `_prisma_migrations` (42501: a prune role granted only the tables it prunes) cannot be checked, and prunes as it
 * did before the check, as an app starts unchecked (MIGRATIONS_UNCHECKED).
 */
async function checkMigrated(url: string): Promise<void> {
  try {
    // db:migrate's connect bound, so that a server that takes the connection and never answers is named alike.
    await verifyMigrations(url, { connectTimeoutMs: MIGRATE_CONNECT_TIMEOUT_MS });
  } catch (error) {
    if ((error as { code?: unknown }).code !== "42501") throw namedConnectTimeout(error);
  }
}

const env = readEnvironmentOrExit();
// Quoted back in a failure's explanation even when the setting itself was refused.
let url = env.DATABASE_URL || DEFAULT_DATABASE_URL;
let db: Db | undefined;
try {
  url = loadDatabaseUrl(env);
  const queue = loadQueueSettings(env);
  await checkMigrated(url);
  const letters = await waitingLetters(queue.REDIS_URL, queue.QUEUE_PREFIX);
  db = createDb({ url, poolMax: 1, applicationName: "db:prune" });
  const result = await pruneNotifications(db.prisma, {
    ...options,
    waitingLetters: letters,
    onBatch: (batch) => console.log(`deleted ${describe(batch)}`),
  });
  const cutoff = result.cutoff.toISOString();
  console.log(
    result.dryRun
      ? `dry run: would delete ${describe(result)} received and last changed before ${cutoff}`
      : `deleted ${describe(result)} received and last changed before ${cutoff}, in ${result.batches} batch(es)`,
  );
  const kept = `kept what the ${letters.letterIds.length} dead letter(s) in notify.dead name`;
  console.log(
    result.dryRun
      ? `dry run: would delete ${result.replayRecords} dead-letter replay record(s) last changed before ${cutoff}; ${kept}`
      : `deleted ${result.replayRecords} dead-letter replay record(s) last changed before ${cutoff}; ${kept}`,
  );
} catch (error) {
  if (error instanceof LettersUnreadableError) {
    console.error(error.message);
    process.exit(1);
  }
  await db?.close();
  if (error instanceof PruneError) {
    console.error(`${error.message}\n${USAGE}`);
    process.exit(2);
  }
  exitOnFailure(error, { databaseUrl: url, osUser: userInfo().username, rerun: "npm run db:prune" }, env);
}
await db.close();
