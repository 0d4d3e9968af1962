import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { addStandardJobKeys, captureAddOptions, standardAddLua } from "./bullmq-add-script.ts";
import type { DeadLetter } from "./jobs/dead.ts";
import { LETTER_FENCE_FIELD, LETTER_PUT_BACK_FIELD } from "./replay-claim.ts";

/**
 * Putting a dead letter's job back in its stage queue, in ONE Redis script (atomic), written as `queue.add(name,
 * data, { jobId })` writes it (bullmq-add-script.ts):
 * - only while the letter's fence is the replay's own (ReplayClaim): a replay that a later one took the letter from —
 *   its claim expired under it — adds nothing ("superseded"), nor does one whose letter was removed meanwhile ("gone");
 * - with the letter marked put back by this replay (LETTER_PUT_BACK_FIELD), so that a replay stopped after this and
 *   before the letter's removal (a process killed in between) is finished by the next replay of the letter, which
 *   finds the mark and only removes the letter: the job is neither put back nor recorded twice.
 * "added": the job is back; "job": a job under its id was there already and is left as it is (as `queue.add` does).
 */
export type PutBackResult = "added" | "job" | "superseded" | "gone";

// KEYS[1..9] = the stage queue's keys (addStandardJobKeys), KEYS[10] = the letter's job hash.
// ARGV[1] = msgpacked options template, ARGV[2] = key prefix of the stage's jobs, ARGV[3] = now (ms),
// ARGV[4] = job name, ARGV[5] = job id, ARGV[6] = data (JSON), ARGV[7] = the replay's fence.
function putBackLua(): string {
  return `${standardAddLua()}
local letter = KEYS[10]
if rcall('HGET', letter, '${LETTER_FENCE_FIELD}') ~= ARGV[7] then
  return rcall('EXISTS', letter) == 1 and 'superseded' or 'gone'
end
local add, close = openStandardAdd(ARGV[1], ARGV[2], ARGV[3])
local outcome = add(ARGV[4], ARGV[5], ARGV[6])
rcall('HSET', letter, '${LETTER_PUT_BACK_FIELD}', ARGV[7])
close()
return outcome`;
}

interface PutBackCommand {
  wpnReplayPutBack(numberOfKeys: number, ...args: (string | number | Buffer)[]): Promise<PutBackResult>;
}

/** The options template of each stage queue (BullMQ's, for the queue's default job options), captured once. */
const templates = new WeakMap<Queue, Promise<Buffer>>();

/** Puts `letter`'s job back in `stage` for the replay of fence `fence`, the letter's job hash being `letterKey`. */
export async function putBack(
  redis: Redis,
  stage: Queue,
  letterKey: string,
  letter: DeadLetter,
  fence: number,
): Promise<PutBackResult> {
  const commands = redis as Redis & Partial<PutBackCommand>;
  if (typeof commands.wpnReplayPutBack !== "function") redis.defineCommand("wpnReplayPutBack", { lua: putBackLua() });
  let template = templates.get(stage);
  if (!template) {
    template = captureAddOptions(stage);
    templates.set(stage, template);
  }
  const { queueKeys, jobPrefix } = addStandardJobKeys(stage);
  // BullMQ serialises an undefined payload as {} (Job#asJSON).
  const data = JSON.stringify(letter.data === undefined ? {} : letter.data);
  return (commands as Redis & PutBackCommand).wpnReplayPutBack(
    queueKeys.length + 1,
    ...queueKeys,
    letterKey,
    await template,
    jobPrefix,
    Date.now(),
    letter.jobName,
    letter.jobId,
    data,
    fence,
  );
}

/**
 * After `putBack` failed (Redis refused the script, or its answer was lost): whether the job is back all the same —
 * the letter carries this replay's mark, or a job under the letter's job id is in the stage queue (a script that
 * failed after the add wrote it; the replay removed the failed original before, so a job there now runs the letter's
 * payload). Rejects when Redis cannot be read.
 */
export async function isPutBack(
  redis: Redis,
  stage: Queue,
  letterKey: string,
  letter: DeadLetter,
  fence: number,
): Promise<boolean> {
  if ((await redis.hget(letterKey, LETTER_PUT_BACK_FIELD)) === String(fence)) return true;
  return (await stage.getJob(letter.jobId)) !== undefined;
}
