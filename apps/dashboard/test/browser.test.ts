import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  APPLY_JOB_NAME,
  createQueue,
  createRedisConnection,
  PARSE_JOB_NAME,
  QueueName,
  recordReceipts,
} from "@wpn/queue";
import { TEST_REDIS_URL } from "@wpn/testing";
import { Worker } from "bullmq";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { randomId, seedNotification, seedOrder } from "./support/seed.ts";

const RESULTS = join(dirname(fileURLToPath(import.meta.url)), "../../../test-results");
/**
 * The Chromium (or Chrome) the test drives; playwright-core brings none. CHROMIUM_PATH is the test suite's own
 * setting, read here rather than through packages/config (which holds the application's).
 */
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

let d: TestDashboard;
let browser: Browser;
let base: string;

beforeAll(async () => {
  d = await startDashboard("dash_browser");
  await d.app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(d.app.server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  mkdirSync(RESULTS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await d?.close();
});

/**
 * A paid order and its notification as the pipeline leaves them: real parse and apply jobs run to completion
 * by BullMQ workers, then the database rows a worker would have written, timed around those jobs, and the
 * ingress receipt of two deliveries.
 */
async function seedPaidOrder(): Promise<{ id: string; outTradeNo: string }> {
  const prisma = d.database.db.prisma;
  const outTradeNo = randomId("SALE1111-");
  const transactionId = "4200002011202611110000123456";
  const id = randomId("EV-2026111110");
  const parse = createQueue(QueueName.Parse, d.redis, d.prefix);
  const apply = createQueue(QueueName.Apply, d.redis, d.prefix);
  const connection = createRedisConnection(TEST_REDIS_URL, "worker");
  let applyAttempts = 0;
  const workers = [
    new Worker(QueueName.Parse, async () => "parsed", { connection, prefix: d.prefix, autorun: false }),
    new Worker(
      QueueName.Apply,
      async () => {
        // The first attempt hits a database hiccup, the retry commits.
        applyAttempts += 1;
        if (applyAttempts === 1) throw new Error("DB_UNAVAILABLE: connection timeout");
        return "applied";
      },
      { connection, prefix: d.prefix, autorun: false },
    ),
  ];
  const done = workers.map((w) => new Promise((resolve) => w.on("completed", resolve)));
  for (const w of workers) void w.run();
  await parse.add(PARSE_JOB_NAME, { v: 1, id }, { jobId: id });
  await apply.add(
    APPLY_JOB_NAME,
    { v: 1, notificationId: id },
    { jobId: id, attempts: 2, backoff: { type: "fixed", delay: 50 } },
  );
  await Promise.all(done);
  await Promise.all(workers.map((w) => w.close()));
  connection.disconnect();
  const parseJob = await parse.getJob(id);
  const applyJob = await apply.getJob(id);
  await parse.close();
  await apply.close();
  if (!parseJob?.finishedOn || !applyJob?.finishedOn) throw new Error("jobs did not complete");

  const received = new Date(parseJob.timestamp - 2);
  const at = (ms: number) => new Date(ms);
  await seedOrder(prisma, {
    outTradeNo,
    amountTotal: 12_800,
    status: "SUCCESS",
    transactionId,
    paidAt: new Date(received.getTime() - 2_000),
    payerOpenid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
  });
  await seedNotification(prisma, {
    id,
    outTradeNo,
    transactionId,
    receivedAt: received,
    appliedAt: at(applyJob.finishedOn),
    attempts: 2,
    status: "APPLIED",
  });
  await prisma.notificationEvent.createMany({
    data: [
      {
        notificationId: id,
        at: at(parseJob.finishedOn),
        kind: "PARSED",
        detail: { kind: "payment", tradeState: "SUCCESS" },
      },
      {
        notificationId: id,
        at: at(applyJob.timestamp + 1),
        kind: "FAILED",
        detail: { attempt: 1, code: "DB_UNAVAILABLE" },
      },
      { notificationId: id, at: at(applyJob.finishedOn), kind: "APPLIED", detail: { orderStatus: "SUCCESS" } },
    ],
  });
  // WeChat delivered it twice (our first answer was late).
  await recordReceipts(d.redis, d.prefix, [{ id, deliveries: 1 }], received.getTime(), 3600);
  await recordReceipts(d.redis, d.prefix, [{ id, deliveries: 1 }], received.getTime() + 15_000, 3600);
  return { id, outTradeNo };
}

it("logs in, finds a paid order's notification by out_trade_no and shows its timeline", async () => {
  const { id, outTradeNo } = await seedPaidOrder();
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const foreign: string[] = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(base) && !request.url().startsWith("data:")) foreign.push(request.url());
  });
  const consoleErrors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  const failedResponses: string[] = [];
  page.on("response", (response) => {
    if (response.status() >= 400) failedResponses.push(`${response.status()} ${response.url()}`);
  });

  await page.goto(`${base}/`);
  expect(new URL(page.url()).pathname).toBe("/login");
  await page.fill('input[name="username"]', "olga");
  await page.fill('input[name="password"]', PASSWORDS.olga);
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type="submit"]')]);
  expect(await page.textContent("h1")).toContain("Overview");
  expect(await page.locator("svg").count()).toBe(2);
  await page.screenshot({ path: join(RESULTS, "dashboard-overview.png"), fullPage: true });

  await page.click('nav a[href="/notifications"]');
  await page.fill('input[name="outTradeNo"]', outTradeNo);
  await Promise.all([page.waitForURL(/outTradeNo=/), page.click('form.search button[type="submit"]')]);
  const link = page.locator(`a[href="/notifications/${id}"]`);
  expect(await link.count()).toBe(1);
  await Promise.all([page.waitForURL(`${base}/notifications/${id}`), link.click()]);

  expect(await page.textContent("h1")).toBe(`Notification ${id}`);
  const entries = await page.locator("ol.timeline li").allInnerTexts();
  const timeline = entries.join("\n");
  expect(timeline).toContain("Received, verified and enqueued (first delivery)");
  expect(timeline).toContain("Redelivered by WeChat: 1 more time(s)");
  expect(timeline).toContain("DB_UNAVAILABLE");
  expect(timeline).toContain("APPLIED");
  expect(timeline).toContain("Job completed");
  expect(entries.length).toBeGreaterThanOrEqual(9);
  const text = (await page.textContent("main")) ?? "";
  expect(text).toContain("128.00 CNY");
  expect(text).not.toContain("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
  await page.screenshot({ path: join(RESULTS, "dashboard-timeline.png"), fullPage: true });

  // bull-board renders under the same session and CSP, and its own client can pause a queue: this exercises
  // the XSRF-TOKEN cookie → X-XSRF-TOKEN header path of the CSRF check in a real browser.
  await page.goto(`${base}/queues/queue/notify.parse`);
  await page.getByText("No latest jobs in this queue.").or(page.getByText("LATEST").first()).first().waitFor();
  await page.screenshot({ path: join(RESULTS, "dashboard-bullboard.png") });
  // The queue menu (⋮) sits right after the workers indicator.
  await page.getByText("No workers").locator("xpath=following::button[1]").click();
  await page.getByRole("menuitem", { name: "Pause" }).click();
  const [pause] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/queues/api/queues/notify.parse/pause")),
    page.getByRole("button", { name: "Confirm" }).click(),
  ]);
  expect(pause.status()).toBe(200);
  const parse = createQueue(QueueName.Parse, d.redis, d.prefix);
  try {
    expect(await parse.isPaused()).toBe(true);
  } finally {
    await parse.close();
  }
  await expect
    .poll(() =>
      d.database.db.prisma.auditLog.count({ where: { actor: "olga", action: "queues.pause", target: "notify.parse" } }),
    )
    .toBe(1);

  expect(foreign).toEqual([]);
  expect(failedResponses).toEqual([]);
  expect(consoleErrors).toEqual([]);
  await context.close();
}, 90_000);
