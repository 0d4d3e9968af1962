/**
 * The HTTP servers bench/ingress.ts compares, one per child process (argv[2] = kind), listening on
 * 127.0.0.1:PORT. Configuration comes from the environment the parent builds (a test merchant's env).
 * - `ingress-sync` / `ingress-async` / `ingress-threads`: the real app (`buildApp`) verifying on the event loop, on
 *   libuv's thread pool, and on an RsaVerifyPool worker thread (INGRESS_VERIFY_THREADS=1);
 * - `bare`: a bare Fastify route answering 204 (the ceiling for any handler on this machine);
 * - `sync-handler`: the design the queue replaces — verify, decrypt and run the Prisma transaction inside
 *   the request (mark the order paid, decrement stock of its items, write the movements), then 204;
 * - `verify-then-add`: the baseline issue #4 names ("a straightforward verify-then-`add` handler reaches about 30%
 *   here"): verify on the event loop, read the envelope id, one BullMQ `queue.add` per request (jobId = id), then 204 —
 *   no batching, no receipts.
 */
import { readFileSync } from "node:fs";
import { loadConfig } from "@wpn/config";
import { createDb } from "@wpn/db";
import { createQueue, createRedisConnection, PARSE_JOB_NAME, type ParseJobV3, QueueName } from "@wpn/queue";
import { openV3Notification, readV3Headers, verifyV3 } from "@wpn/wechatpay";
import Fastify from "fastify";
import { pino } from "pino";
import { buildApp } from "../apps/ingress/src/app.ts";
import { defaultMerchantFromConfig, MerchantRegistry } from "../apps/ingress/src/merchants/registry.ts";
import { ingressSettings } from "../apps/ingress/src/settings.ts";

const kind = process.argv[2];
/** Linux's USER_HZ: /proc times are in these ticks. */
const CLOCK_TICKS_PER_SECOND = 100;
const config = loadConfig(process.env);
const logger = pino({ level: "silent" });

/** A Fastify app whose JSON requests arrive as the raw body Buffer (what signature verification needs). */
function rawJsonApp() {
  const app = Fastify();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_r, body, done) => done(null, body));
  return app;
}

async function start() {
  if (kind === "bare") {
    const app = Fastify();
    app.post("/notify/v3", async (_request, reply) => reply.code(204).send());
    return app;
  }
  if (kind === "ingress-sync" || kind === "ingress-async" || kind === "ingress-threads") {
    const redis = createRedisConnection(config.REDIS_URL, "producer");
    await new Promise((resolve) => redis.once("ready", resolve));
    const merchants = new MerchantRegistry({ defaultMerchant: defaultMerchantFromConfig(config), logger });
    return buildApp({
      settings: ingressSettings(config),
      redis,
      merchants,
      logger,
      verifyMode: kind === "ingress-async" ? "async" : kind === "ingress-threads" ? "threads" : "sync",
    });
  }
  if (kind === "verify-then-add") {
    const redis = createRedisConnection(config.REDIS_URL, "producer");
    await new Promise((resolve) => redis.once("ready", resolve));
    const queue = createQueue(QueueName.Parse, redis, config.QUEUE_PREFIX);
    const merchant = defaultMerchantFromConfig(config);
    const app = rawJsonApp();
    app.post("/notify/v3", async (request, reply) => {
      const body = request.body as Buffer;
      const headers = readV3Headers(request.headers);
      try {
        verifyV3(headers, body, { keys: merchant.keys });
      } catch {
        return reply.code(401).send({ code: "FAIL", message: "signature" });
      }
      const text = body.toString("utf8");
      const { id } = JSON.parse(text) as { id: string };
      const job: ParseJobV3 = {
        v: 1,
        api: "v3",
        id,
        mchid: merchant.mchid,
        receivedAt: Date.now(),
        headers: {
          timestamp: headers.timestamp,
          nonce: headers.nonce,
          serial: headers.serial,
          signatureType: headers.signatureType,
        },
        body: text,
      };
      await queue.add(PARSE_JOB_NAME, job, { jobId: id });
      return reply.code(204).send();
    });
    app.addHook("onClose", async () => {
      await queue.close();
      redis.disconnect();
    });
    return app;
  }
  if (kind === "sync-handler") {
    const db = createDb({ url: config.DATABASE_URL, poolMax: config.PG_POOL_MAX });
    const keys = defaultMerchantFromConfig(config).keys;
    const app = rawJsonApp();
    app.post("/notify/v3", async (request, reply) => {
      const body = request.body as Buffer;
      try {
        verifyV3(readV3Headers(request.headers), body, { keys });
      } catch {
        return reply.code(401).send({ code: "FAIL", message: "signature" });
      }
      const event = openV3Notification(body, config.apiV3KeyBytes);
      if (event.kind !== "transaction") return reply.code(204).send();
      const t = event.transaction;
      await db.prisma.$transaction(async (tx) => {
        // An order is its merchant's number: this server's one merchant, the sub-merchant the payment names.
        const order = await tx.order.findFirst({
          where: { outTradeNo: t.out_trade_no, mchid: config.WECHATPAY_MCHID, subMchid: t.sub_mchid ?? null },
          include: { items: true },
        });
        if (order?.status !== "NOTPAY") return;
        await tx.order.update({
          where: { id: order.id },
          data: {
            status: "SUCCESS",
            transactionId: t.transaction_id,
            paidAt: new Date(),
            payerOpenid: t.payer?.openid ?? null,
          },
        });
        // Lock SKU rows in one global order: two orders sharing SKUs would otherwise deadlock (and 500).
        for (const item of [...order.items].sort((a, b) => a.skuId.localeCompare(b.skuId))) {
          await tx.sku.updateMany({
            where: { id: item.skuId, stock: { gte: item.quantity } },
            data: { stock: { decrement: item.quantity } },
          });
          await tx.inventoryMovement.create({
            data: { skuId: item.skuId, orderId: order.id, delta: -item.quantity, reason: "PAYMENT" },
          });
        }
      });
      return reply.code(204).send();
    });
    app.addHook("onClose", () => db.close());
    return app;
  }
  throw new Error(`unknown server kind ${kind}`);
}

/**
 * CPU time of the main thread alone (µs; Linux, clock-tick resolution): with verification on worker threads the
 * process's total no longer says how busy the event loop is.
 */
function mainThreadCpuUs(): number | undefined {
  try {
    const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

const app = await start();
await app.listen({ host: "127.0.0.1", port: config.PORT });
process.send?.({ type: "listening", port: config.PORT });
process.on("message", (message: { type: string }) => {
  // CPU time of this process (µs, user + system): the parent turns it into CPU per request, a figure that
  // other load on the machine distorts far less than wall-clock throughput.
  if (message.type === "cpu")
    process.send?.({ type: "cpu", usage: process.cpuUsage(), mainThreadUs: mainThreadCpuUs() });
  if (message.type === "exit") {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  }
});
// Ctrl-C (or `kill -INT`) exits normally, so `node --cpu-prof` can write its profile.
process.on("SIGINT", () => process.exit(0));
