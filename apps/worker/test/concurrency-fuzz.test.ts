import { createDb, type Db } from "@wpn/db";
import type { ApplyJob, ParseJob } from "@wpn/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toWorkerError } from "../src/errors.ts";
import { createWorld, inline, seedOrder, seedSkus, v3Payment, v3Refund, type World } from "./support/fixtures.ts";

/**
 * Randomised interleavings over four workers, each with a connection pool of its own as separate processes have:
 * payments (one to three notification ids per transaction, second charges), refunds in every lifecycle, resends (the
 * same notification parsed again), stalled re-runs (the same apply job on two workers at once), and the shop's own
 * writes — item swaps on unpaid orders, closes, restocks. Invariants of money, stock and status are checked at the end
 * against PostgreSQL. The scenario is drawn from a fixed seed, so every run plays the same one; the interleaving is
 * the machine's, and the invariants hold for every interleaving.
 */
const SEED = 20261204;
const SKUS: Record<string, number> = { S1: 6, S2: 4, S3: 10, S4: 3 };
/** Attempts running at once, over the four workers. */
const SLOTS = 16;

let world: World;
let pools: Db[];
beforeAll(async () => {
  world = await createWorld("wfuzz");
  pools = [0, 1, 2, 3].map(() => createDb({ url: world.db.url, poolMax: 4 }));
  await seedSkus(world.prisma, SKUS);
  // Every status change of an order, a refund and a notification, as committed, with the reviewReason it left.
  await world.prisma.$executeRawUnsafe(
    `CREATE TABLE transitions (id bigserial, tbl text, key text, old text, new text, old_reason text)`,
  );
  await world.prisma.$executeRawUnsafe(`CREATE FUNCTION log_transition() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.status IS DISTINCT FROM NEW.status THEN
        INSERT INTO transitions (tbl, key, old, new, old_reason)
        VALUES (TG_TABLE_NAME, NEW.id, OLD.status::text, NEW.status::text, to_jsonb(OLD)->>'reviewReason');
      END IF;
      RETURN NEW;
    END $$`);
  for (const table of ["Order", "Refund", "Notification"]) {
    await world.prisma.$executeRawUnsafe(
      `CREATE TRIGGER log_${table} AFTER UPDATE ON "${table}" FOR EACH ROW EXECUTE FUNCTION log_transition()`,
    );
  }
});
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  await world.cleanup();
});

/** mulberry32: a small seeded generator (Math.random cannot be seeded). */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** At most `n` attempts at once; an attempt waiting to be retried holds no slot, as a delayed job holds no worker. */
function slots(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let free = n;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (free > 0) free -= 1;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else free += 1;
    }
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("randomised interleavings of notifications and the shop's own writes", () => {
  it("leave money, stock and statuses consistent", async () => {
    const random = generator(SEED);
    const rnd = (n: number) => Math.floor(random() * n);
    const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)] as T;
    const workers = pools.map((p) => inline(world, {}, p.prisma));
    const inSlot = slots(SLOTS);
    const failures: string[] = [];
    const restocked: Record<string, number> = Object.fromEntries(Object.keys(SKUS).map((id) => [id, 0]));

    /** Runs `attempt` (on worker `k`, then the next ones) until it needs no retry, as the queue would. */
    const settle = async <T>(label: string, k: number, attempt: (w: number) => Promise<T>): Promise<T | undefined> => {
      const deadline = Date.now() + 30_000;
      for (let round = 0; ; round++) {
        try {
          return await inSlot(() => attempt((k + round) % workers.length));
        } catch (error) {
          const e = toWorkerError(error);
          if (e.policy === "stop" || Date.now() > deadline) {
            failures.push(`${label}: ${e.code} ${e.message}`);
            return undefined;
          }
          await sleep(10);
        }
      }
    };
    /** Parse, then apply on `1 + reruns` workers at once (a stalled job re-run elsewhere). */
    const deliver = async (job: ParseJob, reruns: number, k: number): Promise<void> => {
      const applyJob: ApplyJob | null | undefined = await settle(
        `parse ${job.id}`,
        k,
        async (w) => (await workers[w]!.parse(job)).applyJob,
      );
      if (!applyJob) return;
      await Promise.all(
        Array.from({ length: 1 + reruns }, (_, r) =>
          settle(`apply ${job.id}`, k + r, (w) => workers[w]!.apply(applyJob)),
        ),
      );
    };

    const ops: ((k: number) => Promise<void>)[] = [];
    const orders: { otn: string; txn: string; second: string | null; skus: string[] }[] = [];
    for (let o = 0; o < 30; o++) {
      const otn = `F${o}`;
      const total = pick([300, 500, 1_000]);
      const items: Record<string, number> = {};
      for (const sku of Object.keys(SKUS)) if (random() < 0.4) items[sku] = 1 + rnd(2);
      if (Object.keys(items).length === 0) items.S3 = 1;
      await seedOrder(world, { outTradeNo: otn, amountTotal: total, items });
      const txn = `4200F${o}A`;
      const second = random() < 0.2 ? `4200F${o}B` : null;
      orders.push({ otn, txn, second, skus: Object.keys(items) });
      // The payment: 1–3 notifications (distinct ids) of one transaction, resent and re-run at random.
      for (let n = 1 + rnd(3); n > 0; n--) {
        const job = v3Payment(world, { outTradeNo: otn, transactionId: txn, total });
        const reruns = rnd(2);
        ops.push((k) => deliver(job, reruns, k));
        if (random() < 0.3) ops.push((k) => deliver(job, 0, k));
      }
      if (second) {
        const job = v3Payment(world, { outTradeNo: otn, transactionId: second, total });
        const reruns = rnd(2);
        ops.push((k) => deliver(job, reruns, k));
      }
      // Refunds of amounts that may add up past the total, in WeChat's lifecycles (and a late SUCCESS after CLOSED).
      for (let r = rnd(4); r > 0; r--) {
        const refund = pick([total, Math.floor(total / 2), Math.floor(total / 3), 100]);
        const transactionId = second !== null && random() < 0.3 ? second : txn;
        const lifecycle = pick([
          ["SUCCESS"],
          ["ABNORMAL", "SUCCESS"],
          ["SUCCESS", "ABNORMAL", "SUCCESS"],
          ["CLOSED"],
          ["CLOSED", "SUCCESS"],
          ["ABNORMAL", "CLOSED"],
        ] as const);
        for (const status of lifecycle) {
          const job = v3Refund(world, {
            outTradeNo: otn,
            transactionId,
            outRefundNo: `RF${o}-${r}`,
            refundId: `5000F${o}-${r}`,
            refund,
            total,
            status,
          });
          const reruns = rnd(2);
          ops.push((k) => deliver(job, reruns, k));
          if (random() < 0.3) ops.push((k) => deliver(job, 0, k));
        }
      }
    }
    // The shop swapping an unpaid order's item for another SKU of the same price (a size): it reads the status
    // without a lock and takes its time before committing. The OrderItem trigger locks the order row (the swap and a
    // payment run one after the other) and refuses the swap once the order's payment took its stock (23000
    // OrderItem_stock_taken): the shop then leaves the order as it is.
    for (let i = 0; i < 15; i++) {
      const { otn, skus } = pick(orders);
      const [from, to] = [pick(skus), pick(Object.keys(SKUS))];
      ops.push((k) =>
        inSlot(async () => {
          const client = await pools[k % pools.length]!.pool.connect();
          try {
            await client.query("BEGIN");
            await client.query(
              `WITH gone AS (
                 DELETE FROM "OrderItem" i USING "Order" o
                 WHERE o.id = i."orderId" AND o."outTradeNo" = $1 AND o.status = 'NOTPAY' AND i."skuId" = $2
                 RETURNING i."orderId", i.quantity)
               INSERT INTO "OrderItem" ("orderId", "skuId", quantity) SELECT "orderId", $3, quantity FROM gone`,
              [otn, from, to],
            );
            await sleep(50);
            await client.query("COMMIT");
          } catch (error) {
            await client.query("ROLLBACK");
            if ((error as { constraint?: unknown }).constraint !== "OrderItem_stock_taken") throw error;
          } finally {
            client.release();
          }
        }),
      );
    }
    // The merchant closing unpaid orders, and WeChat's CLOSED trade-state notifications (ignored at parse).
    for (let i = 0; i < 5; i++) {
      const o = pick(orders);
      ops.push((k) =>
        inSlot(async () => {
          await pools[k % pools.length]!.prisma
            .$executeRaw`UPDATE "Order" SET status = 'CLOSED' WHERE "outTradeNo" = ${o.otn} AND status = 'NOTPAY'`;
        }),
      );
      const closed = v3Payment(world, { outTradeNo: o.otn, transactionId: o.txn, tradeState: "CLOSED" });
      const reruns = rnd(2);
      ops.push((k) => deliver(closed, reruns, k));
    }
    // Restocks by the merchant's back office, racing with sales.
    for (let i = 0; i < 10; i++) {
      const sku = pick(Object.keys(SKUS));
      const n = 1 + rnd(2);
      ops.push((k) =>
        inSlot(async () => {
          await pools[k % pools.length]!.prisma.$executeRaw`UPDATE "Sku" SET stock = stock + ${n} WHERE id = ${sku}`;
          restocked[sku] = (restocked[sku] ?? 0) + n;
        }),
      );
    }
    for (let i = ops.length - 1; i > 0; i--) {
      const j = rnd(i + 1);
      [ops[i], ops[j]] = [ops[j]!, ops[i]!];
    }
    await Promise.all(ops.map((op, k) => op(k)));
    expect(failures, `seed ${SEED}`).toEqual([]);

    const p = world.prisma;
    // Stock: the initial stock plus every movement and restock, never below zero.
    const skus = await p.$queryRaw<{ id: string; stock: number; moved: number }[]>`
      SELECT s.id, s.stock, COALESCE((SELECT sum(delta)::int FROM "InventoryMovement" m WHERE m."skuId" = s.id), 0) AS moved
      FROM "Sku" s ORDER BY s.id`;
    for (const s of skus) {
      expect(s.stock, s.id).toBeGreaterThanOrEqual(0);
      expect(s.stock, s.id).toBe((SKUS[s.id] ?? 0) + s.moved + (restocked[s.id] ?? 0));
    }
    for (const o of orders) {
      const row = await p.order.findFirstOrThrow({
        where: { outTradeNo: o.otn },
        include: { movements: true, refunds: true, items: true },
      });
      expect([o.txn, o.second, null], o.otn).toContain(row.transactionId);
      // Money: what the counted refunds add up to, never past the total; REFUND exactly when all of it came back —
      // unless the order is still in review for a second charge not refunded yet (that review is closed to REFUND).
      const inChargeReview = row.status === "PAYMENT_REVIEW" && row.reviewReason === "DUPLICATE_PAYMENT";
      const counted = row.refunds.filter((r) => r.status === "SUCCESS" && r.reviewReason === null);
      expect(row.refundedTotal, o.otn).toBe(counted.reduce((sum, r) => sum + r.amountRefund, 0));
      expect(row.refundedTotal, o.otn).toBeLessThanOrEqual(row.amountTotal);
      // An over-refund: of the payment the order kept, past what it took; of a second charge (another transaction,
      // the same total here), past what that charge took, with the charge's counted refunds.
      const chargeRefunded = (txn: string | null) =>
        row.refunds
          .filter(
            (r) => r.transactionId === txn && r.status === "SUCCESS" && r.reviewReason === "DUPLICATE_PAYMENT_REFUNDED",
          )
          .reduce((sum, r) => sum + r.amountRefund, 0);
      for (const r of row.refunds) {
        if (r.status === "SUCCESS" && r.reviewReason === "REFUND_AMOUNT_MISMATCH") {
          const before = r.transactionId === row.transactionId ? row.refundedTotal : chargeRefunded(r.transactionId);
          expect(before + r.amountRefund, `${o.otn} ${r.outRefundNo} ${r.transactionId}`).toBeGreaterThan(
            row.amountTotal,
          );
        }
      }
      expect(row.status === "REFUND", o.otn).toBe(row.refundedTotal === row.amountTotal && !inChargeReview);
      // Stock: a paid order took exactly the items it holds (the shop changes them only while it is unpaid), and
      // a fully refunded one put exactly that back.
      const held = new Map<string, number>();
      for (const item of row.items) held.set(item.skuId, (held.get(item.skuId) ?? 0) + item.quantity);
      const taken = row.movements.filter((m) => m.reason === "PAYMENT");
      const back = row.movements.filter((m) => m.reason === "REFUND");
      if (taken.length > 0 || row.status === "SUCCESS") {
        expect(new Map(taken.map((m) => [m.skuId, -m.delta])), o.otn).toEqual(held);
      }
      if (back.length > 0 || (row.refundedTotal === row.amountTotal && taken.length > 0)) {
        expect(row.refundedTotal, o.otn).toBe(row.amountTotal);
        expect(back.map((m) => [m.skuId, m.delta]).sort(), o.otn).toEqual(taken.map((m) => [m.skuId, -m.delta]).sort());
      }
      // A second charge (either transaction may be the one recorded second): a SUCCESS order has it refunded in full,
      // an order still in review for it has not — its refund completing it closes the review, never before.
      const charges = await p.notification.findMany({
        where: { outTradeNo: o.otn, status: "REVIEW", errorCode: "DUPLICATE_PAYMENT" },
        select: { transactionId: true },
      });
      const refundedInFull = (txn: string | null) => chargeRefunded(txn) >= row.amountTotal;
      if (row.status === "SUCCESS") {
        expect(
          charges.filter((c) => !refundedInFull(c.transactionId)),
          o.otn,
        ).toEqual([]);
      }
      if (row.status === "PAYMENT_REVIEW" && row.reviewReason === "DUPLICATE_PAYMENT") {
        expect(
          charges.some((c) => !refundedInFull(c.transactionId)),
          o.otn,
        ).toBe(true);
      }
    }
    // Every notification settled, a review with its code.
    const unsettled = await p.$queryRaw<{ id: string; status: string }[]>`
      SELECT id, status::text FROM "Notification"
      WHERE status NOT IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') OR (status = 'REVIEW' AND "errorCode" IS NULL)`;
    expect(unsettled).toEqual([]);
    // Orders only move forward — back to SUCCESS only out of a DUPLICATE_PAYMENT review, closed by the refund of the
    // second charge —, a settled notification never moves, a refund leaves SUCCESS never and CLOSED only for SUCCESS.
    const forward = new Set([
      "NOTPAY>SUCCESS",
      "NOTPAY>PAYMENT_REVIEW",
      "NOTPAY>CLOSED",
      "SUCCESS>PAYMENT_REVIEW",
      "SUCCESS>REFUND",
      "PAYMENT_REVIEW>REFUND",
      "CLOSED>PAYMENT_REVIEW",
    ]);
    const moves = await p.$queryRawUnsafe<
      { tbl: string; key: string; old: string; new: string; old_reason: string | null }[]
    >(`SELECT tbl, key, old, new, old_reason FROM transitions ORDER BY id`);
    const reviewClosed = (m: (typeof moves)[number]) =>
      `${m.old}>${m.new}` === "PAYMENT_REVIEW>SUCCESS" && m.old_reason === "DUPLICATE_PAYMENT";
    expect(moves.filter((m) => m.tbl === "Order").length).toBeGreaterThan(0);
    const backwards = moves.filter(
      (m) =>
        (m.tbl === "Order" && !forward.has(`${m.old}>${m.new}`) && !reviewClosed(m)) ||
        (m.tbl === "Notification" && ["APPLIED", "DUPLICATE", "REVIEW", "IGNORED"].includes(m.old)) ||
        (m.tbl === "Refund" && (m.old === "SUCCESS" || (m.old === "CLOSED" && m.new !== "SUCCESS"))),
    );
    expect(backwards).toEqual([]);
  }, 60_000);
});
