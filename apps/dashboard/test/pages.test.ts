import { execFileSync } from "node:child_process";
import { createHash, createPublicKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createQueue, PARSE_JOB_NAME, QueueName } from "@wpn/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { type Client, loggedIn } from "./support/client.ts";
import { randomId, seedNotification, seedOrder } from "./support/seed.ts";

let d: TestDashboard;
let viewer: Client;
let certPath: string;

beforeAll(async () => {
  // A platform certificate 20 days from expiry, as WeChat's would be near its switch-over.
  const dir = mkdtempSync(join(tmpdir(), "wpn-dash-cert-"));
  certPath = join(dir, "platform.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "20",
      "-subj",
      "/CN=Tenpay.com Root CA test",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      certPath,
    ],
    { stdio: "ignore" },
  );
  d = await startDashboard("dash_pages", { env: { WECHATPAY_PLATFORM_CERT_PATHS: certPath } });
  viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
});
afterAll(async () => {
  await d?.close();
});

describe("overview", () => {
  it("shows rates, latency percentiles, failures by code, queue depths and inline SVG charts", async () => {
    const prisma = d.database.db.prisma;
    const received = new Date(Date.now() - 10 * 60_000);
    const after = (ms: number) => new Date(received.getTime() + ms);
    for (const ms of [200, 400, 600, 10_000]) {
      await seedNotification(prisma, { receivedAt: received, appliedAt: after(ms), status: "APPLIED" });
    }
    await seedNotification(prisma, { receivedAt: received, status: "FAILED", errorCode: "DB_TIMEOUT" });
    await seedNotification(prisma, { receivedAt: received, status: "DEAD", errorCode: "DECRYPT_FAILED" });
    // Outside the hour: not counted.
    await seedNotification(prisma, {
      receivedAt: new Date(Date.now() - 2 * 3_600_000),
      status: "FAILED",
      errorCode: "OLD_ERROR",
    });
    await seedOrder(prisma, { status: "PAYMENT_REVIEW", reviewReason: "AMOUNT_MISMATCH" });
    const parse = createQueue(QueueName.Parse, d.redis, d.prefix);
    try {
      await parse.add(PARSE_JOB_NAME, { v: 1 }, { jobId: randomId("waiting-") });
    } finally {
      await parse.close();
    }

    const page = await viewer.get("/");
    expect(page.statusCode).toBe(200);
    const body = page.body;
    expect(body).toContain("6 in the last hour");
    expect(body).toContain("4 in the last hour");
    // percentile_cont over 200, 400, 600, 10 000 ms: p50 = 500 ms, p99 = 600 + 0.97 × 9 400 = 9 718 ms.
    expect(body).toContain(">500 ms<");
    expect(body).toContain("p99 9.72 s");
    expect(body).toMatch(
      /<code>DB_TIMEOUT<\/code><\/td><td class="num">1<\/td><td class="num">16.7 %<\/td><td class="num">1<\/td>/,
    );
    expect(body).toContain("DECRYPT_FAILED");
    expect(body).not.toContain("OLD_ERROR");
    expect(body.match(/<svg /g)?.length).toBe(2);
    expect(body).toContain("<polyline");
    expect(body).toMatch(/<td class="mono">notify.parse<\/td><td class="num">1<\/td>/);
    expect(body).toMatch(/In review<\/div>\s*<div class="value"><span class="badge warn">1<\/span>/);
    // The configured platform certificate has 20 days left: the overview warns about it.
    expect(body).toMatch(/platform certificate <code>[0-9A-F]+<\/code> expires in (19|20) day\(s\)/);
  });
});

describe("the overview's failures card", () => {
  it("says the codes are the ones carried now, and counts the hour's notifications that failed before they were applied", async () => {
    const now = Date.now();
    const own = await startDashboard("dash_failures_now", { now: () => new Date(now) });
    try {
      const prisma = own.database.db.prisma;
      const receivedAt = new Date(now - 10 * 60_000);
      // ORDER_NOT_FOUND twice (two FAILED entries), then applied: the apply cleared its errorCode.
      const recovered = await seedNotification(prisma, {
        receivedAt,
        appliedAt: new Date(now - 9 * 60_000),
        status: "APPLIED",
        attempts: 3,
      });
      await prisma.notificationEvent.createMany({
        data: [1, 2].map((attempt) => ({
          notificationId: recovered,
          at: receivedAt,
          kind: "FAILED",
          detail: { stage: "notify.apply", code: "ORDER_NOT_FOUND", attempt, retryInMs: 1_000 },
        })),
      });
      await seedNotification(prisma, { receivedAt, appliedAt: new Date(now - 9 * 60_000), status: "APPLIED" });
      const client = await loggedIn(own.app, "victor", PASSWORDS.victor);
      const text = (await client.get("/")).body.replace(/<[^>]+>/g, " ").replace(/\s+/g, " ");
      expect(text).not.toContain("No errors recorded");
      expect(text).toContain("No notification received this hour carries an error code now");
      expect(text).toContain("1 notification(s) received this hour failed before they were applied");
    } finally {
      await own.close();
    }
  });
});

describe("the overview's Failing now card", () => {
  it("counts every notification of the hour FAILED or DEAD, as SQL does, not only those of the codes the table lists", async () => {
    const now = Date.now();
    const own = await startDashboard("dash_failing_now", { now: () => new Date(now) });
    try {
      const prisma = own.database.db.prisma;
      const receivedAt = new Date(now - 10 * 60_000);
      // 25 codes, more than the table's 20, each carried by one FAILED notification; one recovered (attempts 3).
      await prisma.notification.createMany({
        data: Array.from({ length: 25 }, (_, i) => ({
          id: randomId(`n-fail-${i}-`),
          mchid: "1900000109",
          eventType: "TRANSACTION.SUCCESS",
          receivedAt,
          body: "{}",
          status: i % 2 === 0 ? ("FAILED" as const) : ("DEAD" as const),
          attempts: 2,
          errorCode: `CODE_${String(i).padStart(2, "0")}`,
        })),
      });
      await seedNotification(prisma, { receivedAt, appliedAt: receivedAt, status: "APPLIED", attempts: 3 });
      const [row] = await prisma.$queryRaw<{ count: number }[]>`
        SELECT count(*)::int AS count FROM "Notification"
         WHERE status IN ('FAILED', 'DEAD') AND "receivedAt" >= ${new Date(now - 3_600_000)}`;
      const count = row?.count;
      expect(count).toBe(25);
      const client = await loggedIn(own.app, "victor", PASSWORDS.victor);
      const body = (await client.get("/")).body;
      expect(body).toMatch(new RegExp(`Failing now</div><div class="value">${count}</div>`));
      expect(body).toContain("1 notification(s) received this hour failed before they were applied");
    } finally {
      await own.close();
    }
  });
});

describe("overview rate chart", () => {
  it("reads a steady rate as that rate at its last point, early in a minute too", async () => {
    // 6.5 s into a minute: the current bucket holds 6–7 arrivals of a steady 1/s.
    const now = Math.floor(Date.now() / 60_000) * 60_000 + 6_500;
    const steady = await startDashboard("dash_rate", { now: () => new Date(now) });
    try {
      const data = [];
      for (let t = now - 300_000; t < now; t += 1_000) {
        data.push({
          id: `n-${t}`,
          mchid: "1900000109",
          eventType: "TRANSACTION.SUCCESS",
          receivedAt: new Date(t),
          appliedAt: new Date(t + 200),
          body: "{}",
          status: "APPLIED" as const,
          attempts: 1,
        });
      }
      await steady.database.db.prisma.notification.createMany({ data });
      const client = await loggedIn(steady.app, "victor", PASSWORDS.victor);
      const body = (await client.get("/")).body;
      expect(body).toMatch(/Received \/s<\/div><div class="value">1\.00</);
      expect(body).toContain("received/s (now 1.00)");
      expect(body).toContain("applied/s (now 1.00)");
    } finally {
      await steady.close();
    }
  });
});

describe("payment review", () => {
  it("lists orders in PAYMENT_REVIEW with their reason, without payer data", async () => {
    const outTradeNo = randomId("OTN-R");
    await seedOrder(d.database.db.prisma, {
      outTradeNo,
      status: "PAYMENT_REVIEW",
      reviewReason: "OUT_OF_STOCK",
      payerOpenid: "oSECRET-PAYER",
    });
    await seedOrder(d.database.db.prisma, { status: "SUCCESS", outTradeNo: randomId("OTN-OK") });
    const page = await viewer.get("/reviews");
    expect(page.body).toContain(outTradeNo);
    expect(page.body).toContain("OUT_OF_STOCK");
    expect(page.body).not.toContain("OTN-OK");
    expect(page.body).not.toContain("oSECRET-PAYER");
    const filtered = await viewer.get("/reviews?reason=AMOUNT_MISMATCH");
    expect(filtered.body).not.toContain(outTradeNo);
  });

  it("shows what WeChat charged beside the order's amount, on the list and on the notification's page (AMOUNT_MISMATCH)", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-AM");
    await seedOrder(prisma, {
      outTradeNo,
      amountTotal: 5000,
      status: "PAYMENT_REVIEW",
      reviewReason: "AMOUNT_MISMATCH",
      transactionId: randomId("42000"),
      paidAt: new Date(),
      paidTotal: 4999,
      paidCurrency: "CNY",
    });
    const id = await seedNotification(prisma, { outTradeNo, status: "REVIEW", errorCode: "AMOUNT_MISMATCH" });
    const list = await viewer.get("/reviews?reason=AMOUNT_MISMATCH");
    const row = list.body.split("<tr>").find((r) => r.includes(outTradeNo)) ?? "";
    expect(row).toContain("50.00 CNY");
    expect(row).toContain("49.99 CNY");
    const page = await viewer.get(`/notifications/${encodeURIComponent(id)}`);
    expect(page.body).toContain("<dt>Amount</dt><dd>50.00 CNY</dd>");
    expect(page.body).toContain("<dt>Paid</dt><dd>49.99 CNY</dd>");
  });

  it("lists the last 7 days' notifications whose review outcome left no order or refund in review", async () => {
    const prisma = d.database.db.prisma;
    const foreign = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "MCHID_MISMATCH",
      outTradeNo: randomId("OTN-FOREIGN"),
    });
    const abnormal = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "REFUND_ABNORMAL",
      eventType: "REFUND.ABNORMAL",
      outRefundNo: randomId("RF-ABN"),
    });
    // A further report of a paid order's transaction with other facts: the order stays SUCCESS.
    const disagreeing = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "DUPLICATE_MISMATCH",
      outTradeNo: randomId("OTN-DUPFACTS"),
    });
    const old = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "TRANSACTION_CONFLICT",
      receivedAt: new Date(Date.now() - 8 * 86_400_000),
    });
    // An order's review outcome: the order is listed, its notification is not repeated.
    const onOrder = await seedNotification(prisma, { status: "REVIEW", errorCode: "OUT_OF_STOCK" });
    const page = (await viewer.get("/reviews")).body;
    expect(page).toContain(`/notifications/${foreign}"`);
    expect(page).toContain(`/notifications/${abnormal}"`);
    expect(page).toContain(`/notifications/${disagreeing}"`);
    expect(page).toMatch(/DUPLICATE_MISMATCH<\/div><div class="value">1</);
    expect(page).not.toContain(old);
    expect(page).not.toContain(onOrder);
    expect(page).toMatch(/MCHID_MISMATCH<\/div><div class="value">1</);
    const filtered = (await viewer.get("/reviews?reason=REFUND_ABNORMAL")).body;
    expect(filtered).toContain(abnormal);
    expect(filtered).not.toContain(foreign);
    expect((await viewer.get("/reviews?reason=OUT_OF_STOCK")).body).not.toContain(abnormal);
  });

  it("a second payment that put its order in review (DUPLICATE_PAYMENT) is listed and counted once, with the order", async () => {
    const prisma = d.database.db.prisma;
    const onOrder = randomId("OTN-DUP");
    const elsewhere = randomId("OTN-DUP-REFUNDED");
    await seedOrder(prisma, { outTradeNo: onOrder, status: "PAYMENT_REVIEW", reviewReason: "DUPLICATE_PAYMENT" });
    await seedOrder(prisma, { outTradeNo: elsewhere, status: "REFUND" });
    const second = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "DUPLICATE_PAYMENT",
      outTradeNo: onOrder,
    });
    // Paid again after a full refund: the order stays REFUND, only the notification tells.
    const afterRefund = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "DUPLICATE_PAYMENT",
      outTradeNo: elsewhere,
    });
    // Another merchant's second payment of its own order under the same number (not in review): listed.
    const ofOtherMerchant = await seedNotification(prisma, {
      mchid: "1900000200",
      status: "REVIEW",
      errorCode: "DUPLICATE_PAYMENT",
      outTradeNo: onOrder,
    });
    const page = (await viewer.get("/reviews?reason=DUPLICATE_PAYMENT")).body;
    expect(page).toContain(onOrder);
    expect(page).not.toContain(`/notifications/${second}"`);
    expect(page).toContain(`/notifications/${afterRefund}"`);
    expect(page).toContain(`/notifications/${ofOtherMerchant}"`);
    expect((await viewer.get("/reviews")).body).toMatch(/DUPLICATE_PAYMENT<\/div><div class="value">3</);
  });

  it("lists refunds recorded but not counted, beside the orders, and counts them on the overview", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-RF");
    const orderId = await seedOrder(prisma, { outTradeNo, status: "SUCCESS", refundedTotal: 1999 });
    const over = randomId("RF-OVER");
    const counted = randomId("RF-OK");
    await prisma.refund.createMany({
      data: [
        { outRefundNo: counted, outTradeNo, orderId, status: "SUCCESS", amountRefund: 1999, amountTotal: 1999 },
        {
          outRefundNo: over,
          outTradeNo,
          orderId,
          status: "SUCCESS",
          amountRefund: 500,
          amountTotal: 1999,
          reviewReason: "REFUND_AMOUNT_MISMATCH",
        },
      ],
    });
    const before = (await viewer.get("/")).body.match(
      /In review<\/div>\s*<div class="value"><span class="badge \w+">(\d+)</,
    );
    const page = await viewer.get("/reviews");
    expect(page.body).toContain(over);
    expect(page.body).toContain("5.00 CNY");
    expect(page.body).not.toContain(counted);
    expect(page.body).toMatch(/REFUND_AMOUNT_MISMATCH<\/div><div class="value">1</);
    expect((await viewer.get("/reviews?reason=REFUND_AMOUNT_MISMATCH")).body).toContain(over);
    expect((await viewer.get("/reviews?reason=OUT_OF_STOCK")).body).not.toContain(over);
    // The overview's card counts it with the orders (the earlier test's order in review is there too).
    expect(Number(before?.[1])).toBeGreaterThanOrEqual(1);
    await prisma.refund.deleteMany({ where: { outTradeNo } });
    const after = (await viewer.get("/")).body.match(
      /In review<\/div>\s*<div class="value"><span class="badge \w+">(\d+)</,
    );
    expect(Number(after?.[1])).toBe(Number(before?.[1]) - 1);
  });
});

describe("refund amounts", () => {
  it("show, beside a refund that would exceed what was paid, what the order has refunded so far (PostgreSQL's)", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-OVER");
    const orderId = await seedOrder(prisma, { outTradeNo, status: "SUCCESS", amountTotal: 10_000 });
    // Two refunds counted, as the worker counts them (refundedTotal), and a third that would take it past the total.
    const counted = [randomId("RF-A"), randomId("RF-B")];
    await prisma.refund.createMany({
      data: counted.map((outRefundNo, i) => ({
        outRefundNo,
        outTradeNo,
        orderId,
        status: "SUCCESS" as const,
        amountRefund: 3_000 + i * 1_234,
        amountTotal: 10_000,
      })),
    });
    await prisma.order.update({ where: { id: orderId }, data: { refundedTotal: 7_234 } });
    const over = randomId("RF-OVER");
    await prisma.refund.create({
      data: {
        outRefundNo: over,
        outTradeNo,
        orderId,
        status: "SUCCESS",
        amountRefund: 5_000,
        amountTotal: 10_000,
        reviewReason: "REFUND_AMOUNT_MISMATCH",
      },
    });
    const page = (await viewer.get("/reviews?reason=REFUND_AMOUNT_MISMATCH")).body;
    expect(page).toContain('<th class="num">Order refunded so far</th>');
    const row = page.slice(page.indexOf(over), page.indexOf("</tr>", page.indexOf(over)));
    expect(row).toContain('<td class="num">72.34 CNY of 100.00 CNY</td>');
  });

  it("are printed in their order's currency, not always CNY", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-USD");
    const orderId = await seedOrder(prisma, { outTradeNo, status: "SUCCESS", currency: "USD" });
    const outRefundNo = randomId("RF-USD");
    await prisma.refund.create({
      data: {
        outRefundNo,
        outTradeNo,
        orderId,
        status: "SUCCESS",
        amountRefund: 2_468,
        amountTotal: 1_357,
        reviewReason: "REFUND_AMOUNT_MISMATCH",
      },
    });
    const page = (await viewer.get("/reviews?reason=REFUND_AMOUNT_MISMATCH")).body;
    const row = page.slice(page.indexOf(outRefundNo), page.indexOf("</tr>", page.indexOf(outRefundNo)));
    expect(row).toContain("24.68 USD");
    expect(row).toContain("13.57 USD");
    expect(row).not.toContain("CNY");
  });
});

describe("the overview's In review card", () => {
  it("counts what /reviews lists, the notifications in review included, and warns when any", async () => {
    const prisma = d.database.db.prisma;
    // Review outcomes only a notification tells (no order in PAYMENT_REVIEW, no refund with a reviewReason).
    await seedNotification(prisma, { status: "REVIEW", errorCode: "MCHID_MISMATCH", outTradeNo: randomId("OTN-CARD") });
    await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "REFUND_ABNORMAL",
      eventType: "REFUND.ABNORMAL",
      outTradeNo: randomId("OTN-CARD"),
      outRefundNo: randomId("RF-CARD"),
    });
    const card = /In review<\/div>\s*<div class="value"><span class="badge (\w+)">(\d+)</.exec(
      (await viewer.get("/")).body,
    );
    const listed = /In review<\/div><div class="value">(\d+)</.exec((await viewer.get("/reviews")).body);
    expect(Number(listed?.[1])).toBeGreaterThanOrEqual(2);
    // Before: the card counted orders and refunds only (0 on a fresh database with these two).
    expect(card?.[2]).toBe(listed?.[1]);
    expect(card?.[1]).toBe("warn");
  });
});

describe("payment review, odd input", () => {
  it("answers 400 BAD_REQUEST for a reason with a control character (PostgreSQL refuses NUL in text)", async () => {
    for (const reason of ["%00", "a%00b", "OUT_OF%07STOCK"]) {
      const response = await viewer.get(`/reviews?reason=${reason}`);
      expect(response.statusCode, reason).toBe(400);
      expect(response.body, reason).toContain("BAD_REQUEST");
    }
  });

  it("answers 400 for a reason given twice, as the search does, rather than ignoring it", async () => {
    const response = await viewer.get("/reviews?reason=OUT_OF_STOCK&reason=AMOUNT_MISMATCH");
    expect(response.statusCode).toBe(400);
    expect(response.body).toContain("BAD_REQUEST");
  });

  it("lists the orders in review without a reason behind the (none) card", async () => {
    const outTradeNo = randomId("OTN-NOREASON");
    const reasoned = randomId("OTN-REASONED");
    await seedOrder(d.database.db.prisma, { outTradeNo, status: "PAYMENT_REVIEW", reviewReason: null });
    await seedOrder(d.database.db.prisma, {
      outTradeNo: reasoned,
      status: "PAYMENT_REVIEW",
      reviewReason: "OUT_OF_STOCK",
    });
    const card = /href="(\/reviews\?reason=[^"]*)">\s*<div class="label">\(none\)<\/div>/.exec(
      (await viewer.get("/reviews")).body,
    );
    expect(card?.[1]).toBeDefined();
    const listed = await viewer.get(card?.[1]?.replaceAll("&amp;", "&") ?? "");
    expect(listed.statusCode).toBe(200);
    expect(listed.body).toContain(outTradeNo);
    expect(listed.body).not.toContain(reasoned);
  });
});

describe("the refund of a second charge", () => {
  it("is listed with the refunds not counted (DUPLICATE_PAYMENT_REFUNDED), naming the charge the DUPLICATE_PAYMENT review names", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-DUPRF");
    const [kept, second] = [randomId("4200KEPT"), randomId("4200SECOND")];
    const orderId = await seedOrder(prisma, {
      outTradeNo,
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
      transactionId: kept,
    });
    const refundNo = randomId("RF-DUPB");
    await prisma.refund.create({
      data: {
        outRefundNo: refundNo,
        outTradeNo,
        orderId,
        transactionId: second,
        status: "SUCCESS",
        // Refunded in part: the order's review is still open (refunded in full, it is settled: below).
        amountRefund: 999,
        amountTotal: 1_999,
        reviewReason: "DUPLICATE_PAYMENT_REFUNDED",
      },
    });
    const page = (await viewer.get("/reviews")).body;
    const row = page.slice(
      page.lastIndexOf("<tr>", page.indexOf(refundNo)),
      page.indexOf("</tr>", page.indexOf(refundNo)),
    );
    expect(row).toContain("DUPLICATE_PAYMENT_REFUNDED");
    // Before: the refunds list had no transaction_id, so nothing tied this refund to the second charge.
    expect(row).toContain(second);
    expect(page).toMatch(/DUPLICATE_PAYMENT_REFUNDED<\/div><div class="value">1</);
    const filtered = (await viewer.get("/reviews?reason=DUPLICATE_PAYMENT_REFUNDED")).body;
    expect(filtered).toContain(refundNo);
    await prisma.refund.deleteMany({ where: { outRefundNo: refundNo } });
    await prisma.order.updateMany({ where: { outTradeNo }, data: { status: "SUCCESS", reviewReason: null } });
  });

  it("refunded in full, it is settled: neither its DUPLICATE_PAYMENT notification nor its refunds are listed", async () => {
    const prisma = d.database.db.prisma;
    // As the worker leaves them: the second charge of `settled` refunded in full (500 + 700 of 1 200), its order out
    // of review; the second charge of `owed` refunded in part, its order refunded before it was charged again.
    const [settled, owed] = [randomId("OTN-DUPSET"), randomId("OTN-DUPOWED")];
    const orders = [
      { outTradeNo: settled, status: "SUCCESS", charge: randomId("4200SET"), parts: [500, 700] },
      { outTradeNo: owed, status: "REFUND", charge: randomId("4200OWED"), parts: [500] },
    ] as const;
    const seeded: { notification: string; refunds: string[] }[] = [];
    for (const o of orders) {
      const orderId = await seedOrder(prisma, { outTradeNo: o.outTradeNo, status: o.status });
      const notification = await seedNotification(prisma, {
        status: "REVIEW",
        errorCode: "DUPLICATE_PAYMENT",
        outTradeNo: o.outTradeNo,
        transactionId: o.charge,
      });
      const refunds = o.parts.map(() => randomId("RF-DUPPART"));
      await prisma.refund.createMany({
        data: o.parts.map((amountRefund, i) => ({
          outRefundNo: refunds[i] ?? "",
          outTradeNo: o.outTradeNo,
          orderId,
          transactionId: o.charge,
          status: "SUCCESS" as const,
          amountRefund,
          amountTotal: 1_200,
          reviewReason: "DUPLICATE_PAYMENT_REFUNDED",
        })),
      });
      seeded.push({ notification, refunds });
    }
    const [ofSettled, ofOwed] = seeded;
    try {
      const notifications = (await viewer.get("/reviews?reason=DUPLICATE_PAYMENT")).body;
      // Before: the settled charge's notification was listed (its order is not in review), for good within its 7 days.
      expect(notifications).not.toContain(`/notifications/${ofSettled?.notification}"`);
      expect(notifications).toContain(`/notifications/${ofOwed?.notification}"`);
      const refunds = (await viewer.get("/reviews?reason=DUPLICATE_PAYMENT_REFUNDED")).body;
      for (const no of ofSettled?.refunds ?? []) expect(refunds).not.toContain(no);
      for (const no of ofOwed?.refunds ?? []) expect(refunds).toContain(no);
      // Nor counted: the owed charge's one refund, not the settled one's two.
      expect(refunds).toMatch(/DUPLICATE_PAYMENT_REFUNDED<\/div><div class="value">1</);
    } finally {
      await prisma.refund.deleteMany({ where: { outTradeNo: { in: [settled, owed] } } });
      await prisma.notification.deleteMany({ where: { outTradeNo: { in: [settled, owed] } } });
      await prisma.order.deleteMany({ where: { outTradeNo: { in: [settled, owed] } } });
    }
  });

  it("with no order in DUPLICATE_PAYMENT review, a second charge only its notification tells of is still listed", async () => {
    const prisma = d.database.db.prisma;
    const inReview = { status: "PAYMENT_REVIEW", reviewReason: "DUPLICATE_PAYMENT" } as const;
    const hidden = await prisma.order.findMany({ where: inReview, select: { id: true } });
    const ids = hidden.map((o) => o.id);
    await prisma.order.updateMany({ where: { id: { in: ids } }, data: { status: "SUCCESS", reviewReason: null } });
    const outTradeNo = randomId("OTN-DUPONLY");
    await seedOrder(prisma, { outTradeNo, status: "REFUND" });
    const notification = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "DUPLICATE_PAYMENT",
      outTradeNo,
      transactionId: randomId("4200ONLY"),
    });
    try {
      // Before: `NOT: { errorCode: "DUPLICATE_PAYMENT", OR: [] }` — Prisma dropped the empty OR, hiding every one.
      expect((await viewer.get("/reviews?reason=DUPLICATE_PAYMENT")).body).toContain(`/notifications/${notification}"`);
    } finally {
      await prisma.notification.deleteMany({ where: { id: notification } });
      await prisma.order.deleteMany({ where: { outTradeNo } });
      await prisma.order.updateMany({ where: { id: { in: ids } }, data: inReview });
    }
  });
});

describe("payment review in partner mode", () => {
  it("names the sub-merchant of each order, refund and notification in review, linked to its notifications", async () => {
    const prisma = d.database.db.prisma;
    const [ofOrder, ofRefund, ofNotification] = ["1900000SA1", "1900000SB2", "1900000SC3"];
    const link = (sub: string) => `1900000109 / <a href="/notifications?subMchid=${sub}">${sub}</a>`;
    const inReview = randomId("OTN-SUB");
    await seedOrder(prisma, {
      outTradeNo: inReview,
      subMchid: ofOrder,
      status: "PAYMENT_REVIEW",
      reviewReason: "AMOUNT_MISMATCH",
    });
    const refunded = randomId("OTN-SUB-RF");
    const orderId = await seedOrder(prisma, { outTradeNo: refunded, subMchid: ofRefund, status: "SUCCESS" });
    const notCounted = randomId("RF-SUB");
    await prisma.refund.create({
      data: {
        outRefundNo: notCounted,
        outTradeNo: refunded,
        orderId,
        status: "SUCCESS",
        amountRefund: 2_500,
        amountTotal: 1_999,
        reviewReason: "REFUND_AMOUNT_MISMATCH",
      },
    });
    const foreign = await seedNotification(prisma, {
      status: "REVIEW",
      errorCode: "MCHID_MISMATCH",
      subMchid: ofNotification,
      outTradeNo: randomId("OTN-SUB-FOREIGN"),
    });
    const page = (await viewer.get("/reviews")).body;
    const row = (marker: string) =>
      page.slice(page.lastIndexOf("<tr>", page.indexOf(marker)), page.indexOf("</tr>", page.indexOf(marker)));
    expect(row(inReview)).toContain(link(ofOrder));
    expect(row(notCounted)).toContain(link(ofRefund));
    expect(row(`/notifications/${foreign}"`)).toContain(link(ofNotification));
    await prisma.refund.deleteMany({ where: { outRefundNo: notCounted } });
    await prisma.order.updateMany({ where: { outTradeNo: inReview }, data: { status: "SUCCESS", reviewReason: null } });
  });
});

describe("keys", () => {
  it("shows the default merchant's public key id, fingerprint and certificate days left, and the Merchant table", async () => {
    const prisma = d.database.db.prisma;
    await prisma.merchant.create({
      data: {
        mchid: "1900000777",
        appid: "wx-second-app",
        apiV3Key: "SECRET-APIV3-KEY-SECRET-APIV3-KE",
        publicKeyId: "PUB_KEY_ID_SECOND",
        apiSerialNo: "ABCDEF0123456789SECONDMERCHANT",
        apiPrivateKeyPem: "SECRET-PRIVATE-KEY-PEM",
        certificates: {
          create: [
            {
              serial: "EXPIREDSERIAL01",
              pem: "-",
              notBefore: new Date("2020-01-01Z"),
              notAfter: new Date(Date.now() - 3 * 86_400_000),
            },
            {
              serial: "FRESHSERIAL02",
              pem: "-",
              notBefore: new Date("2026-01-01Z"),
              notAfter: new Date(Date.now() + 400 * 86_400_000 + 3_600_000),
            },
          ],
        },
      },
    });
    const page = await viewer.get("/keys");
    expect(page.statusCode).toBe(200);
    const body = page.body;
    const cert = new X509Certificate(readFileSync(certPath));
    const fingerprint = createHash("sha256")
      .update(createPublicKey(d.config.publicKeyPem as string).export({ type: "spki", format: "der" }))
      .digest("hex");
    expect(body).toContain(d.config.WECHATPAY_PUBLIC_KEY_ID);
    expect(body).toContain(fingerprint);
    expect(body).toContain(cert.serialNumber.toUpperCase());
    expect(body).toMatch(/<span class="badge warn">(19|20)<\/span>/);
    expect(body).toContain("PUB_KEY_ID_SECOND");
    // Their PEMs do not parse: the ingress refuses both rows, so neither shows its columns' dates or days left.
    expect(body).not.toContain("expired 3 d ago");
    expect(body).not.toContain('<span class="badge ok">400</span>');
    expect(body.match(/<span class="badge bad">refused \(MERCHANT_KEY_UNUSABLE\)<\/span>/g)).toHaveLength(2);
    expect(body).not.toContain("SECRET-APIV3-KEY");
    // The row downloads its certificates (the ingress does, into memory); its private key never reaches the page.
    expect(body).toContain("Certificate download");
    expect(body).toContain("ABCDEF0123456789SECONDMERCHANT");
    expect(body).not.toContain("SECRET-PRIVATE-KEY-PEM");
  });
});

describe("keys: a PlatformCertificate row whose serial is not its PEM's", () => {
  it("is flagged on the merchant's card, naming both serials, as the ingress refuses it", async () => {
    const pem = readFileSync(certPath, "utf8");
    const pemSerial = new X509Certificate(pem).serialNumber.toUpperCase();
    await d.database.db.prisma.merchant.create({
      data: {
        mchid: "1900000778",
        appid: "wx-misfiled",
        apiV3Key: "SECRET-APIV3-KEY-SECRET-APIV3-KE",
        certificates: {
          create: [
            { serial: "5EC0DE5E7141", pem, notBefore: new Date("2026-01-01Z"), notAfter: new Date("2027-01-01Z") },
          ],
        },
      },
    });
    const body = (await viewer.get("/keys")).body;
    expect(body).toContain(
      `certificate row 5EC0DE5E7141 holds the certificate ${pemSerial}: the ingress refuses it (CERTIFICATE_SERIAL_MISMATCH)`,
    );
  });
});

describe("payment review, two merchants under one out_trade_no and out_refund_no", () => {
  it("links each order's and refund's notifications to that merchant's (and sub-merchant's) alone", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-2M");
    const outRefundNo = randomId("RF-2M");
    const merchants = [
      { mchid: "1900000109", subMchid: null },
      { mchid: "1900000300", subMchid: "1900000S31" },
    ] as const;
    const mine = new Map<string, { payment: string; refund: string }>();
    for (const { mchid, subMchid } of merchants) {
      const orderId = await seedOrder(prisma, {
        outTradeNo,
        mchid,
        subMchid,
        status: "PAYMENT_REVIEW",
        reviewReason: "AMOUNT_MISMATCH",
      });
      await prisma.refund.create({
        data: {
          outRefundNo,
          outTradeNo,
          orderId,
          status: "SUCCESS",
          amountRefund: 5_000,
          amountTotal: 1_999,
          reviewReason: "REFUND_AMOUNT_MISMATCH",
        },
      });
      mine.set(mchid, {
        payment: await seedNotification(prisma, { mchid, subMchid, outTradeNo, status: "REVIEW" }),
        refund: await seedNotification(prisma, {
          mchid,
          subMchid,
          eventType: "REFUND.SUCCESS",
          outTradeNo,
          outRefundNo,
          status: "REVIEW",
        }),
      });
    }
    try {
      const page = (await viewer.get("/reviews")).body;
      const rows = page
        .split("<tr>")
        .filter((row) => row.includes(`>${outTradeNo}<`) || row.includes(`>${outRefundNo}<`));
      expect(rows).toHaveLength(4);
      for (const row of rows) {
        const mchid = merchants.find((m) => row.includes(`>${m.mchid}`))?.mchid ?? "";
        const own = mine.get(mchid);
        const other = [...mine].find(([m]) => m !== mchid)?.[1];
        const link = /<a href="(\/notifications\?[^"]+)">notifications<\/a>/.exec(row)?.[1]?.replaceAll("&amp;", "&");
        expect(link, row).toBeDefined();
        const listed = (await viewer.get(link ?? "")).body;
        const kind = row.includes(`>${outRefundNo}<`) ? "refund" : "payment";
        expect(listed, `${mchid} ${kind}: ${link}`).toContain(`href="/notifications/${own?.[kind]}"`);
        expect(listed, `${mchid} ${kind}: ${link}`).not.toContain(`href="/notifications/${other?.[kind]}"`);
      }
    } finally {
      await prisma.refund.deleteMany({ where: { outRefundNo } });
      await prisma.order.updateMany({ where: { outTradeNo }, data: { status: "SUCCESS", reviewReason: null } });
    }
  });
});

// Last: its DUPLICATE_PAYMENT order would change the counts the tests above expect.
describe("payment review, a double charge", () => {
  it("names the second charge of a DUPLICATE_PAYMENT order beside the order's own transaction_id", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-2ND");
    const first = `42000${Date.now()}01`;
    const second = `42000${Date.now()}02`;
    const orderId = await seedOrder(prisma, {
      outTradeNo,
      status: "PAYMENT_REVIEW",
      reviewReason: "DUPLICATE_PAYMENT",
      transactionId: first,
      paidAt: new Date(),
    });
    await prisma.paymentTransaction.create({
      data: { transactionId: second, orderId, secondCharge: true, total: 1999 },
    });
    const list = await viewer.get("/reviews?reason=DUPLICATE_PAYMENT");
    const row = list.body.split("<tr>").find((r) => r.includes(outTradeNo)) ?? "";
    expect(row).toContain(first);
    expect(row).toContain(`second charge</span> ${second}`);
  });
});
