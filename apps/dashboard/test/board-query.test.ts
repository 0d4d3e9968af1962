import { createQueue, QueueName } from "@wpn/queue";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { type Client, loggedIn } from "./support/client.ts";

/**
 * bull-board's job list (`GET /queues/api/queues`) with the query its client sends (activeQueue, status, page,
 * jobsPerPage), and the ones it never sends: bull-board decodes `activeQueue` again, hands `status` to BullMQ as a job
 * set and `page` to Redis as a list range, so a hostile value answered 500 and logged an error. Refused with 400
 * BAD_REQUEST before Redis, on both boards.
 */
let d: TestDashboard;
let parse: Queue;
let viewer: Client;

beforeAll(async () => {
  d = await startDashboard("dash_board_query");
  parse = createQueue(QueueName.Parse, d.redis, d.prefix);
  await parse.add("parse", { v: 1 }, { jobId: "board-query-1", delay: 60_000 });
  viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
});
afterAll(async () => {
  await parse?.obliterate({ force: true });
  await parse?.close();
  await d?.close();
});

const list = (query: string, board = "/queues-readonly") =>
  viewer.get(`${board}/api/queues?${query}`, { accept: "application/json" });

describe("bull-board's job list query", () => {
  it("answers what its client sends", async () => {
    for (const query of [
      "",
      "page=1&jobsPerPage=10",
      "activeQueue=notify.parse&status=delayed&page=1&jobsPerPage=10",
      "activeQueue=notify.parse&status=latest&page=1&jobsPerPage=50",
      "activeQueue=notify.parse&page=2&jobsPerPage=10",
      "activeQueue=notify.parse&status=delayed&page=1&jobsPerPage=300",
    ]) {
      const response = await list(query);
      expect(response.statusCode, query).toBe(200);
    }
    const delayed = await list("activeQueue=notify.parse&status=delayed&page=1&jobsPerPage=10");
    const queue = delayed.json().queues.find((q: { name: string }) => q.name === "notify.parse");
    expect(queue.jobs.map((job: { id: string }) => job.id)).toEqual(["board-query-1"]);
  });

  it.each([
    ["a status that is no job set", "activeQueue=notify.parse&status=%00&page=1&jobsPerPage=10"],
    ["an unknown status", "activeQueue=notify.parse&status=stalled&page=1&jobsPerPage=10"],
    ["a queue name bull-board cannot decode", "activeQueue=%25&status=delayed&page=1&jobsPerPage=10"],
    ["a control character in the queue name", "activeQueue=%01&page=1&jobsPerPage=10"],
    ["a page past Redis's integers", "activeQueue=notify.parse&status=delayed&page=1e20&jobsPerPage=10"],
    ["a page over 1,000,000", "activeQueue=notify.parse&status=delayed&page=1000001&jobsPerPage=10"],
    ["a page that is not a decimal number", "activeQueue=notify.parse&status=delayed&page=0x10&jobsPerPage=10"],
    ["page 0", "activeQueue=notify.parse&status=delayed&page=0&jobsPerPage=10"],
    ["a negative page", "activeQueue=notify.parse&status=delayed&page=-1&jobsPerPage=10"],
    ["no jobs per page", "activeQueue=notify.parse&status=delayed&page=1&jobsPerPage=abc"],
    ["too many jobs per page", "activeQueue=notify.parse&status=delayed&page=1&jobsPerPage=1001"],
    // bull-board 9.10 refuses over 300 itself, in its own shape (`error: { key: "ERRORS.INVALID_QUERY_PARAM" }`).
    ["more jobs per page than bull-board lists", "activeQueue=notify.parse&status=delayed&page=1&jobsPerPage=301"],
    ["a repeated parameter", "activeQueue=notify.parse&status=delayed&status=failed&page=1&jobsPerPage=10"],
  ])("refuses %s with 400 BAD_REQUEST, on both boards", async (_what, query) => {
    for (const board of ["/queues-readonly", "/queues"]) {
      const operator = board === "/queues" ? await loggedIn(d.app, "olga", PASSWORDS.olga) : viewer;
      const response = await operator.get(`${board}/api/queues?${query}`, { accept: "application/json" });
      expect(response.statusCode, `${board} ${query}`).toBe(400);
      expect(response.json()).toMatchObject({ error: "BAD_REQUEST" });
    }
  });
});
