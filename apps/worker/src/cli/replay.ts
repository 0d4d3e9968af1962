// Replays dead letters: `npm run replay -w @wpn/worker -- <dead-letter-id>... | --all`.
// Prints one line per letter (status, letter id, queue, notification id, message) and a summary line. A letter that
// fails (Redis, PostgreSQL refusing the REPLAYED record) is reported `failed` and the others are still replayed.
// Exits 0 when every named letter was replayed — or resumed: an earlier replay of it, interrupted, completed now — (or
// --all found none left), 1 when one was not (missing, invalid, in flight or failed) or the letters could not be
// listed, 64 on bad usage: an unknown option or an argument that is no letter id (replay-args.ts), nothing replayed.
// `--help` (`-h`) prints the usage on stdout and exits 0, before any setting is read or connection made.
import { loadConfigOrExit } from "@wpn/config";
import { createDb } from "@wpn/db";
import { createRedisConnection, type ReplayOutcome } from "@wpn/queue";
import { replayDeadLetter } from "../replay.ts";
import { parseReplayArgs, REPLAY_USAGE } from "./replay-args.ts";

const request = parseReplayArgs(process.argv.slice(2));
if (request.kind === "help") {
  // Asked for: output, and success (npm printed an error block for the 64 it used to be).
  process.stdout.write(`${REPLAY_USAGE}\n`);
  process.exit(0);
}
if (request.kind === "usage") {
  process.stderr.write(`replay: ${request.problem}\n${REPLAY_USAGE}\n`);
  // 64: EX_USAGE (sysexits.h).
  process.exit(64);
}
// The workspace script runs this from the repository root (`cd ../..`), where .env and its relative key paths are.
const config = loadConfigOrExit();
const connection = createRedisConnection(config.REDIS_URL, "admin");
const db = createDb({
  url: config.DATABASE_URL,
  poolMax: 2,
  connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS,
  applicationName: "wpn-replay",
});
const deps = { connection, prefix: config.QUEUE_PREFIX, prisma: db.prisma, actor: "cli" };

const outcomes: ReplayOutcome[] = [];
// Only listing the letters of --all can throw; a letter's own failure is an outcome.
let stopped: string | undefined;
try {
  if (request.kind === "all") {
    outcomes.push(...(await replayDeadLetter(deps, "--all")));
  } else {
    for (const id of request.ids) outcomes.push(...(await replayDeadLetter(deps, id)));
  }
} catch (error) {
  stopped = error instanceof Error ? error.message : String(error);
}
for (const o of outcomes) {
  // One line per letter: a message over several lines (Prisma's are) is joined.
  const message = o.message ? `\t${o.message.trim().replace(/\s*\n\s*/g, " ")}` : "";
  process.stdout.write(`${o.status}\t${o.id}\t${o.queue ?? "-"}\t${o.notificationId ?? "-"}${message}\n`);
}
process.stdout.write(`${summary(outcomes)}\n`);
if (stopped !== undefined) process.stderr.write(`replay stopped: ${stopped}\n`);
connection.disconnect();
await db.close();
process.exit(stopped === undefined && outcomes.every((o) => o.status === "replayed" || o.status === "resumed") ? 0 : 1);

/** `<n> letter(s): <count> <status>, …`, replayed first, then the other statuses met, in the order first met. */
function summary(list: readonly ReplayOutcome[]): string {
  const counts = new Map<string, number>([["replayed", 0]]);
  for (const o of list) counts.set(o.status, (counts.get(o.status) ?? 0) + 1);
  return `${list.length} letter(s): ${[...counts].map(([status, n]) => `${n} ${status}`).join(", ")}`;
}
