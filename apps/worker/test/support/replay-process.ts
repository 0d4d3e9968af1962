// One dead-letter replay in a process of its own, wired as the worker's CLI wires it (replayDeps: recordReplay and
// recordReplayFailed of @wpn/db), that stops at one point of the replay until told to go on, so that a test can kill
// it there (SIGKILL: a crash, an OOM kill, a deploy) or pause it (SIGSTOP: a VM or GC pause that outlives the claim).
//   node --import tsx apps/worker/test/support/replay-process.ts <letter id> <stop point> <claim ms>
// Environment: DATABASE_URL, REDIS_URL, QUEUE_PREFIX. Prints `<stop point>` when it stops there and reads a line from
// stdin before going on; prints `outcome <json>` at the end.
//   before-record: before the replay's record (onReplayed) is written;
//   after-record: once the record is committed, before the job is put back;
//   before-letter-removal: once the job is back, before its letter is removed from notify.dead (BullMQ Job#remove of a
//     notify.dead job: the letter removal is the only one the replay makes there).
import { createInterface } from "node:readline";
import { createDb } from "@wpn/db";
import { createRedisConnection, QueueName, type ReplayDeps, replayDeadLetter } from "@wpn/queue";
import { Job } from "bullmq";
import { replayDeps } from "../../src/replay.ts";

const STOP_POINTS = ["before-record", "after-record", "before-letter-removal"] as const;
type StopPoint = (typeof STOP_POINTS)[number];

const [letterId = "", stop = "", claimMs = ""] = process.argv.slice(2);
if (!STOP_POINTS.includes(stop as StopPoint)) throw new Error(`unknown stop point ${stop}`);

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function stopHere(point: StopPoint): Promise<void> {
  if (point !== stop) return;
  process.stdout.write(`${point}\n`);
  await lines.next();
}

const connection = createRedisConnection(process.env.REDIS_URL ?? "", "admin");
const db = createDb({ url: process.env.DATABASE_URL ?? "", poolMax: 2, applicationName: "wpn-replay-test" });
const wired = replayDeps({ connection, prefix: process.env.QUEUE_PREFIX ?? "", prisma: db.prisma, actor: "crash" });
const record = wired.onReplayed;
if (!record) throw new Error("replayDeps wired no onReplayed");
const onReplayed: ReplayDeps["onReplayed"] = async (...args) => {
  await stopHere("before-record");
  const recorded = await record(...args);
  await stopHere("after-record");
  return recorded;
};

const remove = Job.prototype.remove;
Job.prototype.remove = async function (this: Job, ...args: Parameters<Job["remove"]>) {
  if (this.queueName === QueueName.Dead) await stopHere("before-letter-removal");
  return remove.apply(this, args);
};

const outcome = await replayDeadLetter({ ...wired, onReplayed, claimMs: Number(claimMs) }, letterId);
process.stdout.write(`outcome ${JSON.stringify(outcome)}\n`);
connection.disconnect();
await db.close();
process.exit(0);
