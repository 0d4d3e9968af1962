// Replays dead letters: `npm run replay -w @wpn/worker -- <dead-letter-id>... | --all`.
// Prints one line per letter and exits 0 when every named letter was replayed (or --all found none left),
// 1 when one was missing, invalid or still in flight, 64 on bad usage.
import { loadConfigOrExit, readEnvironment } from "@wpn/config";
import { createDb } from "@wpn/db";
import { createRedisConnection, type ReplayOutcome } from "@wpn/queue";
import { replayDeadLetter } from "../replay.ts";

const args = process.argv.slice(2).filter((a) => a !== "--");
if (args.length === 0 || args.includes("--help") || (args.includes("--all") && args.length > 1)) {
  process.stderr.write("usage: replay <dead-letter-id>... | --all\n");
  process.exit(64);
}
// The workspace script runs this from the repository root (`cd ../..`), where .env and its relative key paths are.
const config = loadConfigOrExit(readEnvironment());
const connection = createRedisConnection(config.REDIS_URL, "admin");
const db = createDb({
  url: config.DATABASE_URL,
  poolMax: 2,
  connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS,
  applicationName: "wpn-replay",
});
const deps = { connection, prefix: config.QUEUE_PREFIX, prisma: db.prisma, actor: "cli" };

let outcomes: ReplayOutcome[] = [];
try {
  if (args[0] === "--all") {
    outcomes = await replayDeadLetter(deps, "--all");
  } else {
    for (const id of args) outcomes.push(...(await replayDeadLetter(deps, id)));
  }
} finally {
  connection.disconnect();
  await db.close();
}
for (const o of outcomes) {
  process.stdout.write(
    `${o.status}\t${o.id}\t${o.queue ?? "-"}\t${o.notificationId ?? "-"}${o.message ? `\t${o.message}` : ""}\n`,
  );
}
const replayed = outcomes.filter((o) => o.status === "replayed").length;
process.stdout.write(`${replayed} replayed, ${outcomes.length - replayed} not replayed\n`);
process.exit(outcomes.every((o) => o.status === "replayed") ? 0 : 1);
