import {
  createQueue,
  DEAD_JOB_NAME,
  deadLetterJobId,
  NOTIFICATION_ID_MAX_LENGTH,
  PARSE_JOB_NAME,
  QueueName,
  recordReceipts,
} from "@wpn/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PASSWORDS, startDashboard, type TestDashboard } from "./support/app.ts";
import { boardHeaders, type Client, loggedIn } from "./support/client.ts";
import { randomId, seedNotification, seedOrder } from "./support/seed.ts";

let d: TestDashboard;
let viewer: Client;
const T0 = new Date("2026-11-11T00:00:00.000Z");
const minutes = (n: number) => new Date(T0.getTime() + n * 60_000);

// Five notifications with distinct keys, spread over time, two merchants and several statuses.
const rows = {
  paid: {
    id: randomId("pay-"),
    outTradeNo: randomId("OTN-A"),
    transactionId: "4200000001202611110000000001",
    status: "APPLIED",
    receivedAt: minutes(1),
    mchid: "1900000109",
  },
  review: {
    id: randomId("rev-"),
    outTradeNo: randomId("OTN-B"),
    transactionId: "4200000001202611110000000002",
    status: "REVIEW",
    receivedAt: minutes(10),
    mchid: "1900000109",
  },
  failed: {
    id: randomId("fail-"),
    outTradeNo: randomId("OTN-C"),
    transactionId: null,
    status: "FAILED",
    receivedAt: minutes(20),
    mchid: "1900000999",
    errorCode: "ORDER_NOT_FOUND",
  },
  dead: {
    id: randomId("dead-"),
    outTradeNo: randomId("OTN-D"),
    transactionId: null,
    status: "DEAD",
    receivedAt: minutes(30),
    mchid: "1900000999",
    errorCode: "DECRYPT_FAILED",
  },
  refund: {
    id: randomId("ref-"),
    outTradeNo: null,
    transactionId: null,
    outRefundNo: randomId("R"),
    status: "APPLIED",
    receivedAt: minutes(40),
    mchid: "1900000109",
    eventType: "REFUND.SUCCESS",
  },
} as const;

beforeAll(async () => {
  d = await startDashboard("dash_search");
  for (const row of Object.values(rows)) await seedNotification(d.database.db.prisma, { ...row });
  viewer = await loggedIn(d.app, "victor", PASSWORDS.victor);
});
afterAll(async () => {
  await d?.close();
});

async function found(query: Record<string, string>): Promise<string[]> {
  const response = await viewer.get(`/notifications?${new URLSearchParams(query)}`);
  expect(response.statusCode).toBe(200);
  return Object.values(rows)
    .map((r) => r.id)
    .filter((id) => response.body.includes(`href="/notifications/${id}"`));
}

describe("notification search", () => {
  it("finds by out_trade_no, transaction_id and notification id", async () => {
    expect(await found({ outTradeNo: rows.paid.outTradeNo })).toEqual([rows.paid.id]);
    expect(await found({ transactionId: rows.review.transactionId })).toEqual([rows.review.id]);
    expect(await found({ id: rows.failed.id })).toEqual([rows.failed.id]);
    expect(await found({ outTradeNo: "no-such-order" })).toEqual([]);
  });

  it("finds by any id in the free-text box, including out_refund_no", async () => {
    expect(await found({ q: rows.dead.outTradeNo })).toEqual([rows.dead.id]);
    expect(await found({ q: rows.review.transactionId })).toEqual([rows.review.id]);
    expect(await found({ q: rows.refund.outRefundNo })).toEqual([rows.refund.id]);
    expect(await found({ q: rows.paid.id })).toEqual([rows.paid.id]);
  });

  it("filters by status, merchant and time range, and combines filters", async () => {
    expect(await found({ status: "DEAD" })).toEqual([rows.dead.id]);
    expect((await found({ status: "APPLIED" })).sort()).toEqual([rows.paid.id, rows.refund.id].sort());
    expect((await found({ mchid: "1900000999" })).sort()).toEqual([rows.failed.id, rows.dead.id].sort());
    // [T0+5min, T0+35min): review, failed, dead.
    const range = { from: "2026-11-11T00:05", to: "2026-11-11T00:35" };
    expect((await found(range)).sort()).toEqual([rows.review.id, rows.failed.id, rows.dead.id].sort());
    expect(await found({ ...range, mchid: "1900000109" })).toEqual([rows.review.id]);
    expect(await found({ ...range, status: "FAILED" })).toEqual([rows.failed.id]);
    // The bounds: from is inclusive, to exclusive.
    expect(await found({ from: "2026-11-11T00:10", to: "2026-11-11T00:20" })).toEqual([rows.review.id]);
  });

  it("finds by sub-merchant (partner mode's sub_mchid), exactly, alone or with other filters, and shows it", async () => {
    const prisma = d.database.db.prisma;
    const sub = "1900000S77";
    const partner = { mchid: "1900000109", subMchid: sub } as const;
    const applied = await seedNotification(prisma, { ...partner, receivedAt: minutes(50) });
    const review = await seedNotification(prisma, {
      ...partner,
      status: "REVIEW",
      errorCode: "MCHID_MISMATCH",
      receivedAt: minutes(51),
    });
    // Another sub-merchant of the same service provider, and one whose id starts the same: not matched.
    const other = await seedNotification(prisma, {
      mchid: "1900000109",
      subMchid: "1900000S78",
      receivedAt: minutes(52),
    });
    const longer = await seedNotification(prisma, {
      mchid: "1900000109",
      subMchid: `${sub}0`,
      receivedAt: minutes(53),
    });
    const ids = async (query: Record<string, string>) => {
      const response = await viewer.get(`/notifications?${new URLSearchParams(query)}`);
      expect(response.statusCode).toBe(200);
      return [applied, review, other, longer].filter((id) => response.body.includes(`href="/notifications/${id}"`));
    };
    expect((await ids({ subMchid: sub })).sort()).toEqual([applied, review].sort());
    expect(await ids({ subMchid: ` ${sub} ` })).toHaveLength(2);
    expect(await ids({ subMchid: sub, status: "REVIEW" })).toEqual([review]);
    expect(await ids({ subMchid: sub, mchid: "1900000999" })).toEqual([]);
    expect(await ids({ subMchid: "1900000S7" })).toEqual([]);
    // The list names it beside the service provider, linked to this search; the form keeps the term.
    const list = await viewer.get(`/notifications?${new URLSearchParams({ subMchid: sub })}`);
    expect(list.body).toContain(`1900000109 / <a href="/notifications?subMchid=${sub}">${sub}</a>`);
    expect(list.body).toContain(`name="subMchid" value="${sub}"`);
    // Paging keeps the sub-merchant filter.
    for (let i = 0; i < 50; i++) await seedNotification(prisma, { ...partner, receivedAt: minutes(60 + i) });
    const first = await viewer.get(`/notifications?${new URLSearchParams({ subMchid: sub })}`);
    expect(first.body).toContain(`href="/notifications?subMchid=${sub}&amp;page=1"`);
    const second = await viewer.get(`/notifications?${new URLSearchParams({ subMchid: sub, page: "1" })}`);
    expect(second.body).toContain(`href="/notifications/${applied}"`);
    // The notification's page shows it, linked to the notifications of that sub-merchant.
    const page = await viewer.get(`/notifications/${review}`);
    expect(page.body).toContain(
      `<dt>Sub-merchant</dt><dd><a class="mono" href="/notifications?subMchid=${sub}">${sub}</a>`,
    );
  });

  it("finds an APIv3 notification by WeChat's id (its id is `v3:<mchid>:<WeChat's id>`), and its page shows that id", async () => {
    const prisma = d.database.db.prisma;
    const wechatId = randomId("EV-");
    // Two merchants' notifications carrying the same WeChat id, and one parsed before ids named the merchant.
    const own = `v3:1900000109:${wechatId}`;
    const other = `v3:1900000999:${wechatId}`;
    await seedNotification(prisma, { id: own, wechatId, receivedAt: minutes(200) });
    await seedNotification(prisma, { id: other, wechatId, mchid: "1900000999", receivedAt: minutes(201) });
    await seedNotification(prisma, { id: wechatId, receivedAt: minutes(199) });
    const ids = async (query: Record<string, string>) => {
      const response = await viewer.get(`/notifications?${new URLSearchParams(query)}`);
      expect(response.statusCode).toBe(200);
      return [own, other, wechatId].filter((id) =>
        response.body.includes(`href="/notifications/${encodeURIComponent(id)}"`),
      );
    };
    expect((await ids({ q: wechatId })).sort()).toEqual([own, other, wechatId].sort());
    expect((await ids({ id: wechatId })).sort()).toEqual([own, other, wechatId].sort());
    expect(await ids({ id: wechatId, mchid: "1900000999" })).toEqual([other]);
    expect(await ids({ id: own })).toEqual([own]);
    expect(await ids({ q: own })).toEqual([own]);
    // The notification's page names WeChat's id, linked to the notifications carrying it.
    const page = await viewer.get(`/notifications/${encodeURIComponent(own)}`);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(
      `<dt>WeChat notification id</dt><dd><a class="mono" href="/notifications?id=${wechatId}">${wechatId}</a></dd>`,
    );
  });

  it("reports invalid input instead of silently ignoring it", async () => {
    const queries: Record<string, string>[] = [
      { status: "BOGUS" },
      { from: "yesterday" },
      { from: "2026-11-11T01:00", to: "2026-11-11T00:00" },
      // Instants PostgreSQL's timestamp cannot take (22008): they were a 500.
      { from: "0000-01-01" },
      { from: "0001-01-01T00:30+01:00" },
      { to: "9999-12-31T23:30-01:00" },
    ];
    for (const query of queries) {
      const response = await viewer.get(`/notifications?${new URLSearchParams(query)}`);
      expect(response.statusCode, JSON.stringify(query)).toBe(400);
      expect(response.body).toContain('class="flash bad"');
    }
    // A page that is not a number and a status given twice were dropped: the page showed every notification.
    for (const [query, message] of [
      ["page=next", "Page must be a whole number of 1 to 6 digits"],
      ["status=DEAD&status=FAILED", "Status is given more than once"],
      ["subMchid=1900000S77&subMchid=1900000S78", "Sub-merchant (sub_mchid) is given more than once"],
      [`subMchid=${"9".repeat(129)}`, "Sub-merchant (sub_mchid) is longer than 128 characters"],
    ]) {
      const response = await viewer.get(`/notifications?${query}`);
      expect(response.statusCode, query).toBe(400);
      expect(response.body, query).toContain(message);
    }
  });

  it("refuses a control character in any text field (PostgreSQL refuses NUL in text: it was a 500)", async () => {
    for (const key of ["q", "id", "outTradeNo", "transactionId", "mchid", "subMchid"]) {
      for (const value of ["a\u0000b", "\u0000", "a\u0007b", "a\u009bb"]) {
        const query = new URLSearchParams({ [key]: value }).toString();
        const response = await viewer.get(`/notifications?${query}`);
        expect(response.statusCode, query).toBe(400);
        expect(response.body, query).toContain("contains a control character");
      }
    }
  });

  it("refuses a page beyond the last one it reads (an OFFSET of up to 50 million rows for any viewer)", async () => {
    expect((await viewer.get("/notifications?page=200")).statusCode).toBe(200);
    for (const page of ["201", "999999"]) {
      const response = await viewer.get(`/notifications?page=${page}`);
      expect(response.statusCode, page).toBe(400);
      expect(response.body, page).toContain("Page must be at most 200");
    }
  });

  it("a page past the last one says so and links back to the first, rather than 'No notification matches'", async () => {
    const query = { outTradeNo: rows.paid.outTradeNo };
    const beyond = await viewer.get(`/notifications?${new URLSearchParams({ ...query, page: "3" })}`);
    expect(beyond.statusCode).toBe(200);
    expect(beyond.body).not.toContain("No notification matches.");
    expect(beyond.body).toContain("No notification on page 4 of this search");
    expect(beyond.body).toContain(`href="/notifications?outTradeNo=${rows.paid.outTradeNo}">first page</a>`);
    // Nothing matching at all is still said plainly on the first page.
    const none = await viewer.get(`/notifications?${new URLSearchParams({ outTradeNo: "no-such-order" })}`);
    expect(none.body).toContain("No notification matches.");
  });

  it("lists a refund notification with its out_refund_no, also when it carries its transaction_id", async () => {
    const outRefundNo = randomId("R-TX");
    const transactionId = "4200000001202611119999999999";
    const id = await seedNotification(d.database.db.prisma, {
      eventType: "REFUND.SUCCESS",
      outTradeNo: randomId("OTN-RT"),
      transactionId,
      outRefundNo,
      receivedAt: minutes(45),
    });
    const list = await viewer.get(`/notifications?${new URLSearchParams({ transactionId })}`);
    const row = list.body.split("<tr>").find((r) => r.includes(`href="/notifications/${id}"`)) ?? "";
    expect(row).toContain(transactionId);
    expect(row).toContain(outRefundNo);
  });

  it("finds a refund's notifications by WeChat's refund_id in the free-text box, that merchant's only", async () => {
    const prisma = d.database.db.prisma;
    const outRefundNo = randomId("R-WX");
    const refundId = `5000${Date.now()}`;
    const orderId = await seedOrder(prisma, { outTradeNo: randomId("OTN-WX") });
    await prisma.refund.create({
      data: { outRefundNo, refundId, outTradeNo: "x", orderId, status: "SUCCESS", amountRefund: 1, amountTotal: 1999 },
    });
    const ours = await seedNotification(prisma, { eventType: "REFUND.SUCCESS", outRefundNo, receivedAt: minutes(46) });
    // Another merchant's refund under the same out_refund_no is not this refund.
    const theirs = await seedNotification(prisma, {
      eventType: "REFUND.SUCCESS",
      outRefundNo,
      mchid: "1900000999",
      receivedAt: minutes(47),
    });
    const list = await viewer.get(`/notifications?${new URLSearchParams({ q: refundId })}`);
    expect(list.statusCode).toBe(200);
    expect(list.body).toContain(`href="/notifications/${ours}"`);
    expect(list.body).not.toContain(`href="/notifications/${theirs}"`);
  });

  it("escapes every value it renders", async () => {
    const hostile = await seedNotification(d.database.db.prisma, {
      id: randomId("xss-"),
      outTradeNo: `<script>alert("otn")</script>`,
      errorCode: `<img src=x onerror=alert(1)>`,
      lastError: `"><svg onload=alert(2)>`,
    });
    const list = await viewer.get(`/notifications?${new URLSearchParams({ id: hostile })}`);
    expect(list.body).toContain("&lt;script&gt;alert(&quot;otn&quot;)&lt;/script&gt;");
    expect(list.body).not.toContain("<script>");
    expect(list.body).not.toContain("<img src=x");
    const detail = await viewer.get(`/notifications/${hostile}`);
    expect(detail.body).not.toContain("<svg onload");
    expect(detail.body).toContain("&quot;&gt;&lt;svg onload=alert(2)&gt;");
    // Search terms echoed into the form are escaped too.
    const echoed = await viewer.get(`/notifications?${new URLSearchParams({ q: `"><b>x</b>` })}`);
    expect(echoed.body).toContain('value="&quot;&gt;&lt;b&gt;x&lt;/b&gt;"');
    // A sub-merchant id as received (an APIv2 refund's is in the outer XML, which nothing signs), in the list, the
    // search form and the notification's page.
    const subMchid = `"><i>sub</i>`;
    const unsigned = await seedNotification(d.database.db.prisma, { id: randomId("xss-sub-"), subMchid });
    for (const url of [
      `/notifications?${new URLSearchParams({ subMchid })}`,
      `/notifications?${new URLSearchParams({ id: unsigned })}`,
      `/notifications/${unsigned}`,
    ]) {
      const response = await viewer.get(url);
      expect(response.body, url).toContain("&quot;&gt;&lt;i&gt;sub&lt;/i&gt;");
      expect(response.body, url).not.toContain("<i>sub</i>");
    }
  });
});

describe("notification timeline", () => {
  it("merges database events, the BullMQ job and the ingress receipt, without payer data", async () => {
    const outTradeNo = randomId("OTN-T");
    await seedOrder(d.database.db.prisma, {
      outTradeNo,
      status: "SUCCESS",
      transactionId: "4200000009202611110000000009",
      paidAt: minutes(2),
      payerOpenid: "oPAYER-SECRET-OPENID",
    });
    const id = await seedNotification(d.database.db.prisma, {
      id: randomId("tl-"),
      outTradeNo,
      transactionId: "4200000009202611110000000009",
      receivedAt: minutes(1),
      appliedAt: minutes(2),
      attempts: 2,
    });
    await d.database.db.prisma.notificationEvent.createMany({
      data: [
        { notificationId: id, at: minutes(1), kind: "RECEIVED" },
        {
          notificationId: id,
          at: new Date(minutes(1).getTime() + 500),
          kind: "FAILED",
          detail: { code: "DB_UNAVAILABLE", attempt: 1 },
        },
        { notificationId: id, at: minutes(2), kind: "APPLIED", detail: { orderStatus: "SUCCESS" } },
      ],
    });
    const parse = createQueue(QueueName.Parse, d.redis, d.prefix);
    try {
      await parse.add(PARSE_JOB_NAME, { v: 1, id }, { jobId: id });
    } finally {
      await parse.close();
    }
    await recordReceipts(d.redis, d.prefix, [{ id, deliveries: 3 }], minutes(1).getTime(), 3600);

    const page = await viewer.get(`/notifications/${id}`);
    expect(page.statusCode).toBe(200);
    const body = page.body;
    for (const text of [
      "Received, verified and enqueued (first delivery)",
      "Redelivered by WeChat: 2 more time(s)",
      "DB_UNAVAILABLE",
      "APPLIED",
      `Job ${id} enqueued`,
      "notify.parse",
      outTradeNo,
      "19.99 CNY",
      "SUCCESS",
    ]) {
      expect(body, text).toContain(text);
    }
    expect(body).not.toContain("oPAYER-SECRET-OPENID");
    expect(body).not.toContain("ENCRYPTED");
    // Chronological: the first delivery comes before the failure, the failure before APPLIED.
    const timeline = body.slice(body.indexOf('<ol class="timeline">'), body.indexOf("</ol>"));
    expect(timeline.indexOf("first delivery")).toBeGreaterThan(0);
    expect(timeline.indexOf("first delivery")).toBeLessThan(timeline.indexOf("DB_UNAVAILABLE"));
    expect(timeline.indexOf("DB_UNAVAILABLE")).toBeLessThan(timeline.indexOf(">APPLIED<"));
  });

  it("shows a job whose hash cannot be read (data not JSON) as that job, unreadable; the rest of the page renders", async () => {
    const id = await seedNotification(d.database.db.prisma, { status: "PROCESSING", outTradeNo: randomId("OTN") });
    const parse = createQueue(QueueName.Parse, d.redis, d.prefix);
    try {
      await parse.add(PARSE_JOB_NAME, { v: 1, id }, { jobId: id });
      // A hand edit that left a value unquoted: V8's parse error quotes the JSON around it, a payer id here.
      await d.redis.hset(parse.toKey(id), "data", '{"v":1,"openid":oSECRET-PAYER}');
    } finally {
      await parse.close();
    }
    const page = await viewer.get(`/notifications/${id}`);
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(
      new RegExp(`<td class="mono">notify.parse</td><td class="mono">${id}</td><td>unreadable</td>`),
    );
    expect(page.body).toContain("job hash is not JSON");
    expect(page.body).not.toContain("oSECRET");
    expect(page.body).toContain("Received and verified");
  });

  it("shows each order's own refund when two merchants use the same out_refund_no", async () => {
    const prisma = d.database.db.prisma;
    const outRefundNo = randomId("R-shared-");
    const refunds = [
      { mchid: "1900000109", amountRefund: 1_234, status: "SUCCESS", reviewReason: null },
      { mchid: "1900000777", amountRefund: 567, status: "SUCCESS", reviewReason: "REFUND_AMOUNT_MISMATCH" },
    ] as const;
    const pages: string[] = [];
    for (const r of refunds) {
      const outTradeNo = randomId("OTN-R");
      const orderId = await seedOrder(prisma, { outTradeNo, mchid: r.mchid, status: "SUCCESS" });
      const id = await seedNotification(prisma, {
        id: randomId("rf-"),
        mchid: r.mchid,
        eventType: "REFUND.SUCCESS",
        outTradeNo,
        outRefundNo,
      });
      // Before migration 20261201130000 the second row violated the deployment-wide unique out_refund_no.
      await prisma.refund.create({
        data: {
          outRefundNo,
          outTradeNo,
          orderId,
          status: r.status,
          amountRefund: r.amountRefund,
          amountTotal: 1_999,
          reviewReason: r.reviewReason,
        },
      });
      const page = await viewer.get(`/notifications/${id}`);
      expect(page.statusCode).toBe(200);
      pages.push(page.body.slice(page.body.indexOf("<h2>Refund</h2>")));
    }
    expect(pages[0]).toContain("12.34 CNY of 19.99 CNY");
    expect(pages[0]).not.toContain("Not counted");
    expect(pages[1]).toContain("5.67 CNY of 19.99 CNY");
    expect(pages[1]).toContain("<code>REFUND_AMOUNT_MISMATCH</code>");
  });

  it("two merchants' orders and refunds under one out_trade_no and out_refund_no: each notification links its own; the search finds both", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-M");
    const outRefundNo = randomId("R-M");
    const ids: string[] = [];
    for (const [mchid, total, refunded] of [
      ["1900000109", 2_222, 1_111],
      ["1900000200", 3_333, 3_000],
    ] as const) {
      const orderId = await seedOrder(prisma, { outTradeNo, mchid, status: "SUCCESS", amountTotal: total });
      await prisma.refund.create({
        data: { outRefundNo, outTradeNo, orderId, status: "SUCCESS", amountRefund: refunded, amountTotal: total },
      });
      ids.push(
        await seedNotification(prisma, {
          mchid,
          eventType: "REFUND.SUCCESS",
          outTradeNo,
          outRefundNo,
          status: "APPLIED",
        }),
      );
    }
    const [ofFirst, ofSecond] = await Promise.all(ids.map((id) => viewer.get(`/notifications/${id}`)));
    expect(ofFirst?.body).toContain("11.11 CNY of 22.22 CNY");
    expect(ofFirst?.body).not.toContain("33.33 CNY");
    expect(ofSecond?.body).toContain("30.00 CNY of 33.33 CNY");
    expect(ofSecond?.body).not.toContain("22.22 CNY");
    for (const page of [ofFirst, ofSecond]) expect(page?.body).not.toContain("not this notification's");
    const list = await viewer.get(`/notifications?${new URLSearchParams({ outTradeNo })}`);
    for (const id of ids) expect(list.body).toContain(`href="/notifications/${id}"`);
  });

  it("links its out_trade_no to the notifications of its own merchant and sub-merchant, not another's under that number", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-L");
    const direct = await seedNotification(prisma, { mchid: "1900000109", outTradeNo, status: "APPLIED" });
    const sub = { mchid: "1900000109", subMchid: "1900000S77", outTradeNo };
    const ofSubMerchant = await seedNotification(prisma, { ...sub, status: "APPLIED" });
    const ofSubMerchantAgain = await seedNotification(prisma, { ...sub, status: "DUPLICATE" });
    const ofOther = await seedNotification(prisma, { mchid: "1900000200", outTradeNo, status: "APPLIED" });
    const listedFrom = async (id: string) => {
      const page = (await viewer.get(`/notifications/${id}`)).body;
      const link = /<dt>out_trade_no<\/dt><dd class="mono"><a href="([^"]+)">/
        .exec(page)?.[1]
        ?.replaceAll("&amp;", "&");
      expect(link, id).toBeDefined();
      const listed = (await viewer.get(link ?? "")).body;
      return [direct, ofSubMerchant, ofSubMerchantAgain, ofOther].filter((n) =>
        listed.includes(`href="/notifications/${n}"`),
      );
    };
    expect(await listedFrom(ofSubMerchant)).toEqual([ofSubMerchant, ofSubMerchantAgain]);
    expect(await listedFrom(ofOther)).toEqual([ofOther]);
    expect(await listedFrom(direct)).toContain(direct);
    expect(await listedFrom(direct)).not.toContain(ofOther);
  });

  it("does not link another merchant's order or refund that uses the same out_trade_no", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-X");
    const outRefundNo = randomId("R-X");
    const orderId = await seedOrder(prisma, {
      outTradeNo,
      mchid: "1900000109",
      status: "SUCCESS",
      transactionId: "4200000000202611110000000A01",
      paidAt: minutes(3),
      amountTotal: 4_321,
    });
    await prisma.refund.create({
      data: { outRefundNo, outTradeNo, orderId, status: "SUCCESS", amountRefund: 1_111, amountTotal: 4_321 },
    });
    // Since migration 20261130210000 another merchant's payment under this out_trade_no leaves the order alone
    // (REVIEW MCHID_MISMATCH); its refund is not recorded either.
    const payment = await seedNotification(prisma, {
      mchid: "1900000200",
      outTradeNo,
      transactionId: "4200000000202611110000000B01",
      status: "REVIEW",
      errorCode: "MCHID_MISMATCH",
    });
    const refund = await seedNotification(prisma, {
      mchid: "1900000200",
      eventType: "REFUND.SUCCESS",
      outTradeNo,
      outRefundNo,
      status: "REVIEW",
      errorCode: "MCHID_MISMATCH",
    });
    for (const id of [payment, refund]) {
      const page = await viewer.get(`/notifications/${id}`);
      expect(page.statusCode).toBe(200);
      const text = page.body.replace(/<[^>]+>/g, " ").replace(/\s+/g, " ");
      expect(text, id).toContain(
        `out_trade_no ${outTradeNo} belongs to merchant 1900000109's order — not this notification's`,
      );
      for (const detail of ["4200000000202611110000000A01", "43.21 CNY", "11.11 CNY", "Paid at", "Refunded"]) {
        expect(text, `${id}: ${detail}`).not.toContain(detail);
      }
    }
  });

  it("in partner mode, does not link another sub-merchant's order of the same service provider", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-S");
    await seedOrder(prisma, {
      outTradeNo,
      mchid: "1900000109",
      subMchid: "1900000301",
      status: "SUCCESS",
      transactionId: "4200000000202611110000000S01",
      amountTotal: 2_468,
    });
    // The Notification row keeps the service provider's mchid only; the worker compared the sub_mchid the
    // (encrypted) body named and recorded MCHID_MISMATCH.
    const foreign = await seedNotification(prisma, {
      mchid: "1900000109",
      outTradeNo,
      transactionId: "4200000000202611110000000S02",
      status: "REVIEW",
      errorCode: "MCHID_MISMATCH",
    });
    const page = await viewer.get(`/notifications/${foreign}`);
    // A link is inline text (the sub-merchant's, before "'s order"); other tags separate words.
    const text = page.body
      .replace(/<\/?a\b[^>]*>/g, "")
      .replace(/<[^>]+>/g, " ")
      .replace(/\s+/g, " ");
    expect(text).toContain(
      `out_trade_no ${outTradeNo} belongs to merchant 1900000109 / sub-merchant 1900000301's order — not this notification's`,
    );
    expect(text).not.toContain("24.68 CNY");
    expect(text).not.toContain("4200000000202611110000000S01");
    // The owner's sub-merchant links to its notifications, as a sub-merchant does wherever it is shown (README).
    expect(page.body).toContain(
      `merchant 1900000109 / sub-merchant <a href="/notifications?subMchid=1900000301">1900000301</a>'s order`,
    );
    // A row without a merchant (none recorded) is not linked either.
    const unknown = await seedNotification(prisma, { mchid: null, outTradeNo });
    const unknownPage = await viewer.get(`/notifications/${unknown}`);
    expect(unknownPage.body).toContain("this notification records no merchant to compare");
    expect(unknownPage.body).not.toContain("24.68 CNY");
    // The order's own notification (its row names the order's sub-merchant) still shows it.
    const own = await seedNotification(prisma, {
      mchid: "1900000109",
      subMchid: "1900000301",
      outTradeNo,
      transactionId: "4200000000202611110000000S01",
    });
    const ownPage = await viewer.get(`/notifications/${own}`);
    expect(ownPage.body).toContain("24.68 CNY");
    expect(ownPage.body).toContain(
      `<dt>Merchant / app</dt><dd class="mono">1900000109 / sub <a href="/notifications?subMchid=1900000301">1900000301</a> · `,
    );
    expect(ownPage.body).not.toContain("not this notification's");
  });

  it("in partner mode, names every other sub-merchant's order under the number, each sub-merchant linked", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-M");
    for (const subMchid of ["1900000C31", "1900000C32"]) {
      await seedOrder(prisma, { outTradeNo, mchid: "1900000109", subMchid, status: "SUCCESS", amountTotal: 975 });
    }
    const third = await seedNotification(prisma, { mchid: "1900000109", subMchid: "1900000C33", outTradeNo });
    const page = await viewer.get(`/notifications/${third}`);
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(
      /the orders of merchants 1900000109 \/ sub-merchant <a href="\/notifications\?subMchid=1900000C3[12]">1900000C3[12]<\/a>, 1900000109 \/ sub-merchant <a href="\/notifications\?subMchid=1900000C3[12]">1900000C3[12]<\/a> — not this notification's/,
    );
    expect(page.body).not.toContain("9.75 CNY");
  });

  it("in partner mode, tells sub-merchants apart by the recorded sub_mchid before the worker applied the notification", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-P");
    await seedOrder(prisma, {
      outTradeNo,
      mchid: "1900000109",
      subMchid: "1900000B22",
      status: "SUCCESS",
      transactionId: "4200000000202611110000000P01",
      amountTotal: 1_357,
    });
    // Parsed, not yet applied (no MCHID_MISMATCH verdict): sub-merchant A's payment naming B's out_trade_no.
    const pending = { mchid: "1900000109", outTradeNo, status: "PROCESSING", attempts: 0 } as const;
    const ofA = await seedNotification(prisma, {
      ...pending,
      transactionId: "4200000000202611110000000P02",
      subMchid: "1900000A11",
    });
    const text = async (id: string) => {
      const page = await viewer.get(`/notifications/${id}`);
      expect(page.statusCode).toBe(200);
      return page.body
        .replace(/<\/?a\b[^>]*>/g, "")
        .replace(/<[^>]+>/g, " ")
        .replace(/\s+/g, " ");
    };
    const pageOfA = await text(ofA);
    expect(pageOfA).toContain("Sub-merchant 1900000A11");
    expect((await viewer.get(`/notifications/${ofA}`)).body).toContain(
      `(this notification names sub-merchant <a href="/notifications?subMchid=1900000A11">1900000A11</a>)`,
    );
    expect(pageOfA).toContain(
      `out_trade_no ${outTradeNo} belongs to merchant 1900000109 / sub-merchant 1900000B22's order — not this notification's (this notification names sub-merchant 1900000A11)`,
    );
    expect(pageOfA).not.toContain("13.57 CNY");
    expect(pageOfA).not.toContain("4200000000202611110000000P01");
    // B's own notification is linked.
    const ofB = await seedNotification(prisma, {
      ...pending,
      transactionId: "4200000000202611110000000P01",
      subMchid: "1900000B22",
    });
    const pageOfB = await text(ofB);
    expect(pageOfB).toContain("13.57 CNY");
    expect(pageOfB).not.toContain("not this notification's");
    // A row that records no sub-merchant is the service provider's own (direct) notification — an order is its
    // merchant's and sub-merchant's number (migration 20261207110002) — or one parsed before migration 20261202130000,
    // whose sub-merchant the row does not keep: a sub-merchant's order is not its own.
    const noSub = await seedNotification(prisma, {
      ...pending,
      transactionId: "4200000000202611110000000P01",
      subMchid: null,
    });
    const pageNoSub = await text(noSub);
    expect(pageNoSub).toContain(
      `out_trade_no ${outTradeNo} belongs to merchant 1900000109 / sub-merchant 1900000B22's order — not this notification's (this notification records no sub-merchant)`,
    );
    expect(pageNoSub).not.toContain("13.57 CNY");
    // An APIv2 refund's sub-merchant is the outer XML's, which nothing signs: the page says so.
    const v2Refund = await seedNotification(prisma, {
      ...pending,
      apiVersion: "v2",
      eventType: "REFUND.SUCCESS",
      outRefundNo: randomId("R-P"),
      subMchid: "1900000B22",
    });
    expect(await text(v2Refund)).toContain("Sub-merchant 1900000B22 (outer XML of an APIv2 refund: not signed)");
  });

  it("answers 404 for an id nobody has seen", async () => {
    const response = await viewer.get("/notifications/never-seen");
    expect(response.statusCode).toBe(404);
  });

  it("answers 400 BAD_REQUEST for an id with a control character, not 500", async () => {
    for (const id of ["a%00b", "%00", "a%1Bb"]) {
      const response = await viewer.get(`/notifications/${id}`);
      expect(response.statusCode, id).toBe(400);
      expect(response.body, id).toContain("BAD_REQUEST");
    }
  });

  it("opens a notification whose id is as long as the ingress makes them, and its dead letter in bull-board", async () => {
    // An APIv2 refund's id with WeChat's documented field lengths (refund_id 32, sub_mch_id 32) and a 32-digit mchid:
    // 120 characters, within NOTIFICATION_ID_MAX_LENGTH (128) — beyond the router's default parameter length (100).
    const id = `v2:refund:${"1".repeat(32)}.${"5".repeat(32)}.REFUNDCLOSE.${"2".repeat(32)}`;
    expect(id.length).toBeLessThanOrEqual(NOTIFICATION_ID_MAX_LENGTH);
    await seedNotification(d.database.db.prisma, { id, apiVersion: "v2", eventType: "REFUND.CLOSED", status: "DEAD" });
    const link = `/notifications/${encodeURIComponent(id)}`;
    expect((await viewer.get(`/notifications?${new URLSearchParams({ id })}`)).body).toContain(`href="${link}"`);
    const page = await viewer.get(link);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(id);
    // Its dead letter's id is the job id and 20 characters more (deadLetterJobId).
    const dead = createQueue(QueueName.Dead, d.redis, d.prefix);
    const letterId = deadLetterJobId(QueueName.Apply, id, Date.now());
    try {
      await dead.add(DEAD_JOB_NAME, { v: 1 }, { jobId: letterId });
      const headers = await boardHeaders(viewer, "/queues-readonly");
      const job = await viewer.get(
        `/queues-readonly/api/queues/${QueueName.Dead}/${encodeURIComponent(letterId)}`,
        headers,
      );
      expect(job.statusCode).toBe(200);
      expect(job.json().job.id).toBe(letterId);
    } finally {
      await dead.obliterate({ force: true });
      await dead.close();
    }
    // The page's own limit, not the router's, refuses a longer id.
    const tooLong = await viewer.get(`/notifications/${"x".repeat(257)}`);
    expect(tooLong.statusCode).toBe(400);
    expect(tooLong.body).toContain("BAD_REQUEST");
  });

  it("finds no job for an id that is no usable job id: BullMQ's own keys are not jobs (WRONGTYPE was a 500)", async () => {
    // A job in each stage creates the queues' keys (id, events, meta); a worker's stalled-check key is set by hand.
    for (const name of [QueueName.Parse, QueueName.Apply]) {
      const queue = createQueue(name, d.redis, d.prefix);
      await queue.add(PARSE_JOB_NAME, {}, { jobId: randomId("key-maker-") });
      await queue.close();
      await d.redis.set(`${d.prefix}:${name}:stalled-check`, String(Date.now()));
    }
    for (const id of ["events", "id", "meta", "stalled-check", "wait", "12345", "a:b"]) {
      const response = await viewer.get(`/notifications/${id}`);
      expect(response.statusCode, id).toBe(404);
      expect(response.body, id).not.toContain("Jobs in Redis");
    }
  });

  it("prints a refund's amounts in its order's currency", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-USD");
    const outRefundNo = randomId("R-USD");
    const orderId = await seedOrder(prisma, { outTradeNo, status: "SUCCESS", currency: "USD", amountTotal: 1_999 });
    const id = await seedNotification(prisma, { eventType: "REFUND.SUCCESS", outTradeNo, outRefundNo });
    await prisma.refund.create({
      data: { outRefundNo, outTradeNo, orderId, status: "SUCCESS", amountRefund: 1_234, amountTotal: 1_999 },
    });
    const page = (await viewer.get(`/notifications/${id}`)).body;
    expect(page).toContain("19.99 USD");
    expect(page.slice(page.indexOf("<h2>Refund</h2>"))).toContain("12.34 USD of 19.99 USD");
    expect(page).not.toContain("CNY");
  });

  it("names the refund's WeChat refund number (refund_id), linked to the search that finds its notifications", async () => {
    const prisma = d.database.db.prisma;
    const outTradeNo = randomId("OTN-RID");
    const outRefundNo = randomId("R-RID");
    const refundId = `5001${Date.now()}`;
    const orderId = await seedOrder(prisma, { outTradeNo, status: "SUCCESS" });
    const id = await seedNotification(prisma, { eventType: "REFUND.SUCCESS", outTradeNo, outRefundNo });
    await prisma.refund.create({
      data: { outRefundNo, refundId, outTradeNo, orderId, status: "SUCCESS", amountRefund: 1, amountTotal: 1_999 },
    });
    const page = (await viewer.get(`/notifications/${id}`)).body;
    expect(page.slice(page.indexOf("<h2>Refund</h2>"))).toContain(
      `<dt>refund_id</dt><dd class="mono"><a href="/notifications?q=${refundId}">${refundId}</a></dd>`,
    );
  });
});
