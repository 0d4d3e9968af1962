import { APPLY_JOB_NAME, createQueue, DEAD_JOB_NAME, type DeadLetter, deadLetterJobId, QueueName } from "@wpn/queue";
import { type JobsOptions, type Queue, UnrecoverableError, Worker } from "bullmq";
import type { FastifyBaseLogger } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { boardHeaders, loggedIn } from "./support/client.ts";
import { randomId } from "./support/seed.ts";

/**
 * The dead-letter page's list: at most DEAD_LETTER_LIST_LIMIT (500) letters across its three states, the newest, as
 * the page says; a letter whose payload cannot be read is shown (and logged) as that one letter, not a failed page.
 * Its own queue prefix: these letters would crowd the replay tests' (dead-letters.test.ts).
 */

let d: TestDashboard;
let dead: Queue;
const logLines: { code?: string; letterIds?: string[]; count?: number }[] = [];

beforeAll(async () => {
  const logger = pino({ level: "info" }, { write: (line: string) => logLines.push(JSON.parse(line)) });
  d = await startDashboard("dash_dlq_list", { logger: logger as FastifyBaseLogger });
  dead = createQueue(QueueName.Dead, d.redis, d.prefix);
});
afterAll(async () => {
  await dead?.close();
  await d?.close();
});

/** A letter as the apply worker writes it (no Notification row: the list reads Redis only). */
function letter(notificationId: string): DeadLetter {
  return {
    v: 1,
    queue: QueueName.Apply,
    jobName: APPLY_JOB_NAME,
    jobId: notificationId,
    notificationId,
    outTradeNo: randomId("OTN"),
    code: "ORDER_NOT_FOUND",
    message: "no order with this out_trade_no after 20 attempts",
    attemptsMade: 20,
    failedAt: Date.now(),
    data: { v: 1 },
  };
}

/** The letter ids a page lists (each row's id cell). */
const listedIds = (body: string) => [...body.matchAll(/<td class="mono">(apply\.[^<]+)<\/td>/g)].map((m) => m[1]);

describe("the dead-letter list", () => {
  it("shows the 500 newest letters across its three states, and says so, in two Redis calls", async () => {
    // 1,503 letters a second apart, newest first, dealt in turn to waiting, delayed and prioritized: each state holds
    // more than 500, and the 500 newest are spread over all three.
    const base = Date.now() - 60_000;
    const states: JobsOptions[] = [{}, { delay: 3_600_000 }, { priority: 1 }];
    const ids: string[] = [];
    const jobs = Array.from({ length: 1_503 }, (_, i) => {
      const notificationId = randomId(`n${i}-`);
      const timestamp = base - i * 1000;
      const jobId = deadLetterJobId(QueueName.Apply, notificationId, timestamp);
      ids.push(jobId);
      return { name: DEAD_JOB_NAME, data: letter(notificationId), opts: { ...states[i % 3], jobId, timestamp } };
    });
    // Added oldest first, as the workers add them (a letter's timestamp is when it was written).
    await dead.addBulk(jobs.reverse());

    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const sent = vi.spyOn(d.redis, "sendCommand");
    let page: Awaited<ReturnType<typeof viewer.get>>;
    let commands: string[];
    try {
      page = await viewer.get("/dead-letters");
      commands = sent.mock.calls.map(([command]) => command.name);
    } finally {
      sent.mockRestore();
    }
    expect(page.statusCode).toBe(200);
    expect(listedIds(page.body)).toEqual(ids.slice(0, 500));
    expect(page.body).toContain("1503 letter(s) in <code>notify.dead</code>, the 500 newest shown.");
    expect(page.body).toContain("Only the newest 500 are listed; use bull-board for the rest.");
    expect(commands, commands.join(" ")).toHaveLength(2);

    await dead.obliterate({ force: true });
  });

  it("lists a stray id whose key is not a job hash, or is gone, as unreadable with its id; the others still listed", async () => {
    const readable = deadLetterJobId(QueueName.Apply, randomId("n-"), Date.now() - 3_000);
    await dead.add(DEAD_JOB_NAME, letter(readable.split(".")[1] ?? ""), { jobId: readable });
    // A stray id in the wait list whose key holds a string (HGETALL on it is a WRONGTYPE error), and one whose key is gone.
    const stray = deadLetterJobId(QueueName.Apply, randomId("n-"), Date.now() - 2_000);
    await d.redis.set(dead.toKey(stray), "not a job");
    const gone = deadLetterJobId(QueueName.Apply, randomId("n-"), Date.now() - 1_000);
    await d.redis.lpush(dead.toKey("wait"), stray, gone);

    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const page = await viewer.get("/dead-letters");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(`<td class="mono">${readable}</td>`);
    expect(page.body).toMatch(
      new RegExp(`<td class="mono">${stray}</td>\\s*<td colspan="6">.*unreadable letter.*</td>`),
    );
    expect(page.body).toMatch(
      new RegExp(`<td class="mono">${gone}</td>\\s*<td colspan="6">.*unreadable letter.*</td>`),
    );
    await d.redis.lrem(dead.toKey("wait"), 0, stray);
    await d.redis.lrem(dead.toKey("wait"), 0, gone);
    await d.redis.del(dead.toKey(stray));
  });

  it("shows a letter whose payload is not JSON as that one letter, unreadable, with its id; logged with its code", async () => {
    const readable = deadLetterJobId(QueueName.Apply, randomId("n-"), Date.now() - 2_000);
    await dead.add(DEAD_JOB_NAME, letter(readable.split(".")[1] ?? ""), { jobId: readable });
    const broken = deadLetterJobId(QueueName.Apply, randomId("n-"), Date.now() - 1_000);
    await dead.add(DEAD_JOB_NAME, letter(broken.split(".")[1] ?? ""), { jobId: broken });
    // A hand edit that left a value unquoted: V8's parse error quotes the JSON around it, a payer id here.
    await d.redis.hset(dead.toKey(broken), "data", '{"v":1,"queue":"notify.apply","openid":oSECRET-PAYER}');
    const lines = logLines.length;

    const viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
    const page = await viewer.get("/dead-letters");
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(
      new RegExp(`<td class="mono">${broken}</td>\\s*<td colspan="6">.*unreadable letter.*payload is not JSON.*</td>`),
    );
    expect(page.body).toContain(`<td class="mono">${readable}</td>`);
    expect(page.body).toContain("ORDER_NOT_FOUND");
    expect(page.body).not.toContain("oSECRET");
    expect(JSON.stringify(logLines.slice(lines))).not.toContain("oSECRET");
    expect(logLines.slice(lines).find((line) => line.code === "DEAD_LETTER_UNREADABLE")).toMatchObject({
      letterIds: [broken],
      count: 1,
    });
    // Its replay is refused as that letter's own outcome, and it stays for an operator to look at.
    const operator = await loggedIn(d.app, "olga", PASSWORDS.olga);
    const replay = await operator.post("/dead-letters/replay", { id: broken });
    expect(replay.statusCode).toBe(303);
    expect(replay.headers.location).toContain("invalid=1");
    expect(await d.redis.exists(dead.toKey(broken))).toBe(1);

    // Where the page sends an operator to look at it: bull-board lists it beside the others, and opens it.
    const headers = await boardHeaders(operator);
    const board = await operator.get(
      `/queues/api/queues?activeQueue=${QueueName.Dead}&status=waiting&page=1&jobsPerPage=50`,
      headers,
    );
    expect(board.statusCode).toBe(200);
    const listed = (board.json() as { queues: { name: string; jobs: { id: string; data: unknown }[] }[] }).queues
      .find((queue) => queue.name === QueueName.Dead)
      ?.jobs.map((job) => job.id);
    expect(listed).toEqual(expect.arrayContaining([broken, readable]));
    const opened = await operator.get(`/queues/api/queues/${QueueName.Dead}/${broken}`, headers);
    expect(opened.statusCode).toBe(200);
    expect(opened.body).toContain("is not JSON");
    expect(opened.body).not.toContain("oSECRET");
    expect(JSON.stringify(logLines.slice(lines))).not.toContain("oSECRET");
    // Not left for the next test's stray consumer, whose BullMQ would print the parse error with the data.
    await dead.remove(broken);
  });

  it("names the order as the letter does: out_trade_no with the sub-merchant (linked to its notifications) and out_refund_no; a letter of an earlier release, its out_trade_no", async () => {
    // A partner's refund the parse stage refused: its letter names what its row does (the worker README, parse stage).
    const partner = deadLetterJobId(QueueName.Parse, randomId("n-"), Date.now() - 2_000);
    const named = { outTradeNo: randomId("OTN"), subMchid: "1900000A11", outRefundNo: randomId("RF") };
    await dead.add(
      DEAD_JOB_NAME,
      { ...letter(partner.split(".")[1] ?? ""), queue: QueueName.Parse, code: "PAYLOAD_INVALID", ...named },
      { jobId: partner },
    );
    // Written before letters had subMchid and outRefundNo.
    const earlier = deadLetterJobId(QueueName.Apply, randomId("n-"), Date.now() - 1_000);
    const old = letter(earlier.split(".")[1] ?? "");
    await dead.add(DEAD_JOB_NAME, old, { jobId: earlier });

    const page = await (await loggedIn(d.app, "victor", PASSWORDS.victor)).get("/dead-letters");
    expect(page.statusCode).toBe(200);
    // Linked to its notifications, as a sub-merchant is wherever it is shown (README, /notifications).
    expect(page.body).toContain(
      `<td class="mono">${named.outTradeNo}<br><span class="muted">sub-merchant <a href="/notifications?subMchid=${named.subMchid}">${named.subMchid}</a></span>` +
        `<br><span class="muted">out_refund_no ${named.outRefundNo}</span></td>`,
    );
    expect(page.body).toContain(`<td class="mono">${old.outTradeNo}</td>`);
    await dead.remove(partner);
    await dead.remove(earlier);
  });

  it("says how many letters were moved by hand to another state (here failed), which it does not list", async () => {
    const moved = deadLetterJobId(QueueName.Apply, randomId("n-"), Date.now());
    await dead.add(DEAD_JOB_NAME, letter(moved.split(".")[1] ?? ""), { jobId: moved });
    // A stray consumer of notify.dead fails every letter it takes (the other tests' letters too: this test runs last).
    const consumer = new Worker(
      QueueName.Dead,
      async () => {
        throw new UnrecoverableError("taken by hand");
      },
      { connection: d.redis.duplicate({ maxRetriesPerRequest: null }), prefix: d.prefix },
    );
    await vi.waitFor(async () => expect(await dead.getJobState(moved)).toBe("failed"), { timeout: 10_000 });
    await consumer.close();
    const page = await (await loggedIn(d.app, "victor", PASSWORDS.victor)).get("/dead-letters");
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(
      /letter\(s\) moved out of waiting by hand \(active: \d+, completed: \d+, failed: [1-9]\d*\)/,
    );
  });
});
