// Worker benchmark: `npx tsx bench/worker.ts [--notifications 10000] [--concurrency 128] [--pool 8] [--history 50000]`. Writes
// bench/worker-report.md (and raw numbers to bench/results/worker.json).
//
// What is measured, on this machine (everything — PostgreSQL, Redis, workers, this driver — shares its cores):
// 1. Throughput, end to end: N signed APIv3 payment notifications (orders of two items) are already in
//    `notify.parse` (the queue is paused while they are added); P worker processes start and report ready;
//    the queue is resumed; the clock stops at the last commit (max Notification.appliedAt). Every job goes
//    parse → apply, exactly as in production. P = 1, 2, 4.
// 2. The same with the baseline: identical processes and settings, but the apply stage's payments run as one
//    transaction each, statement by statement with raw `pg` (bench/worker-baseline.ts), instead of one
//    statement per batch of concurrent payments. Runs alternate between the two implementations so drift in
//    the machine affects both.
// 3. Latency: notifications enqueued at a steady rate below capacity with 2 processes running; the time from
//    enqueue (Notification.receivedAt) to commit (appliedAt), p50/p99.
// 4. For context, the apply statement alone (no queue), Prisma single statement vs pg statements.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { applyPaymentStatement, createDb, type Db } from "@wpn/db";
import { createQueue, createRedisConnection, PARSE_JOB_NAME, type ParseJobV3, QueueName } from "@wpn/queue";
import { createTestDatabase, createTestMerchant, deletePrefix, TEST_REDIS_URL, testQueuePrefix } from "@wpn/testing";
import { createSignedV3Notification } from "@wpn/wechatpay";
import { baselinePayment } from "./worker-baseline.ts";

const root = resolve(import.meta.dirname, "..");
const { values: args } = parseArgs({
  options: {
    notifications: { type: "string", default: "10000" },
    /** WORKER_CONCURRENCY and WORKER_PARSE_CONCURRENCY (jobs at once per stage and process; the worker's default). */
    concurrency: { type: "string", default: "128" },
    /** PG_POOL_MAX per process, and the concurrency of the statement-only runs. */
    pool: { type: "string", default: "8" },
    repeats: { type: "string", default: "2" },
    /** Paid orders and applied notifications already in the database when a run starts (see seedHistory). */
    history: { type: "string", default: "50000" },
    /** Enqueue rate of the latency run, per second; default: half the measured 2-process worker throughput. */
    "latency-rate": { type: "string" },
    /** Only these runs, e.g. `prisma:1,pg:1` or `latency:prisma` (with --latency-rate); skips the others. */
    only: { type: "string" },
    /** Re-render bench/worker-report.md from bench/results/worker.json without running anything. */
    "report-only": { type: "boolean", default: false },
    /** Write a V8 CPU profile of every worker process into this directory. */
    profile: { type: "string" },
  },
});
const N = Number(args.notifications);
const CONCURRENCY = Number(args.concurrency);
const POOL = Number(args.pool);
const REPEATS = Number(args.repeats);
const HISTORY = Number(args.history);
/** Seconds of traffic at the start of a latency run that are not counted (process warm-up). */
const LATENCY_WARMUP_S = 5;
let latencyRate = Number(args["latency-rate"] ?? 0);
const SKUS = 200;
const profileArgs = args.profile ? ["--cpu-prof", `--cpu-prof-dir=${resolve(args.profile)}`] : [];

const merchant = createTestMerchant();
const test = await createTestDatabase("bench_worker");
const prisma = test.db.prisma;
const redis = createRedisConnection(TEST_REDIS_URL, "admin");
const prefix = testQueuePrefix("bench-worker");
const parseQueue = createQueue(QueueName.Parse, redis, prefix);
const applyQueue = createQueue(QueueName.Apply, redis, prefix);

const env: Record<string, string> = {
  ...merchant.env,
  DATABASE_URL: test.url,
  REDIS_URL: TEST_REDIS_URL,
  QUEUE_PREFIX: prefix,
  LOG_LEVEL: "warn",
  NODE_ENV: "production",
  WORKER_CONCURRENCY: String(CONCURRENCY),
  WORKER_PARSE_CONCURRENCY: String(CONCURRENCY),
  PG_POOL_MAX: String(POOL),
};

/** N orders of two items each (SKUs spread over SKUS rows), as a checkout would have written them. */
async function resetData(): Promise<void> {
  await prisma.$executeRawUnsafe(
    `TRUNCATE "NotificationEvent", "Notification", "InventoryMovement", "Refund", "OrderItem", "Order", "Sku" CASCADE`,
  );
  await prisma.$executeRawUnsafe(
    `INSERT INTO "Sku" (id, name, stock) SELECT 'sku' || g, 'SKU ' || g, 1000000 FROM generate_series(0, ${SKUS - 1}) g`,
  );
  await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal")
    SELECT 'o' || g, 'B' || g, ${merchant.mchid}, ${merchant.appid}, 300 FROM generate_series(1, ${N}::int) g`;
  await prisma.$executeRawUnsafe(`INSERT INTO "OrderItem" ("orderId", "skuId", quantity)
    SELECT 'o' || g, 'sku' || (g % ${SKUS}), 1 FROM generate_series(1, ${N}) g
    UNION ALL SELECT 'o' || g, 'sku' || ((g * 7 + 1) % ${SKUS}), 2 FROM generate_series(1, ${N}) g`);
  await seedHistory();
  // Outside a transaction block: fresh statistics and visibility map for every run.
  const admin = await test.db.pool.connect();
  try {
    await admin.query("VACUUM ANALYZE");
  } finally {
    admin.release();
  }
}

/**
 * Yesterday's traffic: HISTORY paid orders (`H<i>`, two items, two movements) with their applied notifications
 * (`hist-<i>`, a body of the real size) and timelines. A merchant's database is never empty; more to the point,
 * PostgreSQL plans against the statistics of the moment. Measured on empty Notification/NotificationEvent
 * tables, the statistics said "empty", the plans cached for the apply function and the foreign-key checks
 * scanned those tables sequentially, and every lookup cost more as a run filled them (apply statement 1.8 ms
 * per notification instead of 0.6 ms in a single-client test) — a cold-start state a running system leaves
 * within a minute (autoanalyze), not the steady state this benchmark is about.
 */
async function seedHistory(): Promise<void> {
  if (HISTORY === 0) return;
  const body = JSON.stringify({ resource: { ciphertext: "A".repeat(900) } });
  await prisma.$executeRaw`INSERT INTO "Order" (id, "outTradeNo", mchid, appid, "amountTotal", status, "transactionId", "paidAt")
    SELECT 'ho' || g, 'H' || g, ${merchant.mchid}, ${merchant.appid}, 300, 'SUCCESS', 'H4200' || g, now() - interval '1 day'
    FROM generate_series(1, ${HISTORY}::int) g`;
  await prisma.$executeRaw`INSERT INTO "OrderItem" ("orderId", "skuId", quantity)
    SELECT 'ho' || g, 'sku' || (g % ${SKUS}::int), q FROM generate_series(1, ${HISTORY}::int) g, (VALUES (1), (2)) v(q)`;
  await prisma.$executeRaw`INSERT INTO "InventoryMovement" ("skuId", "orderId", delta, reason)
    SELECT 'sku' || ((g + q) % ${SKUS}::int), 'ho' || g, -q, 'PAYMENT' FROM generate_series(1, ${HISTORY}::int) g, (VALUES (1), (2)) v(q)`;
  await prisma.$executeRaw`INSERT INTO "Notification" (id, mchid, "eventType", "receivedAt", headers, body, status, attempts,
      "outTradeNo", "transactionId", "appliedAt", "updatedAt")
    SELECT 'hist-' || g, ${merchant.mchid}, 'TRANSACTION.SUCCESS', now() - interval '1 day', '{"nonce":"x"}', ${body},
           'APPLIED', 1, 'H' || g, 'H4200' || g, now() - interval '1 day', now() - interval '1 day'
    FROM generate_series(1, ${HISTORY}::int) g`;
  await prisma.$executeRaw`INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
    SELECT 'hist-' || g, now() - interval '1 day', k, '{}' FROM generate_series(1, ${HISTORY}::int) g,
           unnest(ARRAY['RECEIVED', 'APPLIED']) k`;
}

/** One signed APIv3 TRANSACTION.SUCCESS per order, generated once and reused by every run. */
function buildNotifications(): ParseJobV3[] {
  const apiV3Key = Buffer.from(merchant.apiV3Key, "utf8");
  return Array.from({ length: N }, (_, i) => {
    const signed = createSignedV3Notification({
      eventType: "TRANSACTION.SUCCESS",
      originalType: "transaction",
      summary: "支付成功",
      resource: {
        mchid: merchant.mchid,
        appid: merchant.appid,
        out_trade_no: `B${i + 1}`,
        transaction_id: `4200${String(i + 1).padStart(16, "0")}`,
        trade_type: "JSAPI",
        trade_state: "SUCCESS",
        trade_state_desc: "支付成功",
        bank_type: "OTHERS",
        success_time: "2026-11-30T10:34:56+08:00",
        payer: { openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
        amount: { total: 300, payer_total: 300, currency: "CNY", payer_currency: "CNY" },
      },
      apiV3Key,
      privateKey: merchant.platformPrivateKey,
      serial: merchant.publicKeyId,
    });
    const h = signed.headers;
    return {
      v: 1,
      api: "v3",
      id: signed.id,
      mchid: merchant.mchid,
      receivedAt: 0,
      headers: {
        timestamp: h["Wechatpay-Timestamp"] ?? "",
        nonce: h["Wechatpay-Nonce"] ?? "",
        serial: h["Wechatpay-Serial"] ?? "",
        signatureType: h["Wechatpay-Signature-Type"] ?? "",
      },
      body: signed.body.toString("utf8"),
    };
  });
}

interface Workers {
  children: ChildProcess[];
  stop(): Promise<void>;
}

async function startWorkers(impl: "prisma" | "pg", processes: number, basePort: number): Promise<Workers> {
  const children = Array.from({ length: processes }, (_, i) =>
    spawn(process.execPath, [...profileArgs, "--import", "tsx", "bench/worker-process.ts", impl], {
      cwd: root,
      env: { ...process.env, ...env, WORKER_INDEX: String(i), WORKER_HEALTH_PORT: String(basePort) },
      stdio: ["ignore", "ignore", "inherit"],
    }),
  );
  for (let i = 0; i < processes; i++) {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${basePort + i}/health/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (children[i]!.exitCode !== null) throw new Error(`worker ${i} exited with ${children[i]!.exitCode}`);
      await sleep(100);
    }
  }
  for (const child of children) {
    running.add(child);
    child.once("exit", () => running.delete(child));
  }
  return {
    children,
    async stop() {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((done) => {
              if (c.exitCode !== null) return done();
              c.once("exit", () => done());
              c.kill("SIGTERM");
            }),
        ),
      );
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU time (user + system) a process has used so far, ms, from /proc (Linux). 0 when it is gone. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    // After "pid (comm) ", utime and stime are the 12th and 13th fields, in clock ticks (100 per second).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    // The process exited between listing and reading: it no longer counts.
    return 0;
  }
}

/** PostgreSQL backends serving the worker processes (application_name wpn-worker-N). */
async function workerBackends(): Promise<number[]> {
  const rows = await prisma.$queryRaw<{ pid: number }[]>`
    SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'wpn-worker-%' AND datname = current_database()`;
  return rows.map((r) => r.pid);
}

async function redisPid(): Promise<number> {
  return Number((await redis.info("server")).match(/process_id:(\d+)/)?.[1] ?? 0);
}

async function cpuSnapshot(
  workers: Workers,
): Promise<{ workers: number; postgres: Map<number, number>; redis: number }> {
  const postgres = new Map<number, number>();
  for (const pid of await workerBackends()) postgres.set(pid, cpuMs(pid));
  return {
    workers: workers.children.reduce((sum, c) => sum + (c.pid ? cpuMs(c.pid) : 0), 0),
    postgres,
    redis: cpuMs(await redisPid()),
  };
}

/** CPU ms per notification spent by the worker processes, their PostgreSQL backends and Redis between two snapshots. */
function cpuPerNotification(
  a: Awaited<ReturnType<typeof cpuSnapshot>>,
  b: Awaited<ReturnType<typeof cpuSnapshot>>,
  count: number,
): { worker: number; postgres: number; redis: number } {
  let postgres = 0;
  for (const [pid, end] of b.postgres) postgres += end - (a.postgres.get(pid) ?? 0);
  return { worker: (b.workers - a.workers) / count, postgres: postgres / count, redis: (b.redis - a.redis) / count };
}

async function resetQueues(): Promise<void> {
  await parseQueue.obliterate({ force: true });
  await applyQueue.obliterate({ force: true });
}

async function appliedCount(): Promise<number> {
  return prisma.notification.count({ where: { status: "APPLIED", outTradeNo: { startsWith: "B" } } });
}

async function enqueue(jobs: ParseJobV3[], receivedAt: number): Promise<void> {
  for (let i = 0; i < jobs.length; i += 500) {
    await parseQueue.addBulk(
      jobs.slice(i, i + 500).map((j) => ({ name: PARSE_JOB_NAME, data: { ...j, receivedAt }, opts: { jobId: j.id } })),
    );
  }
}

interface ThroughputRun {
  impl: "prisma" | "pg";
  processes: number;
  seconds: number;
  perSecond: number;
  /** CPU ms per notification: worker processes, their PostgreSQL backends, Redis (shared with others: an upper bound). */
  cpu: { worker: number; postgres: number; redis: number };
  /** 1-minute load average at the end of the run. */
  load: number;
  /** Parse jobs per parse statement (group commit), mean over the run; absent in results from before batching. */
  parseBatch?: number;
  /** Payment apply jobs per payment statement (group commit), mean; absent in results from before batching. */
  applyBatch?: number;
}

async function throughput(
  impl: "prisma" | "pg",
  processes: number,
  jobs: ParseJobV3[],
  port: number,
): Promise<ThroughputRun> {
  await resetData();
  await resetQueues();
  await parseQueue.pause();
  await enqueue(jobs, Date.now());
  const workers = await startWorkers(impl, processes, port);
  try {
    const before = await cpuSnapshot(workers);
    const started = Date.now();
    await parseQueue.resume();
    while ((await appliedCount()) < N) {
      if (Date.now() - started > 600_000) throw new Error("run did not finish in 10 minutes");
      await sleep(200);
    }
    const after = await cpuSnapshot(workers);
    const last = await prisma.notification.aggregate({ _max: { appliedAt: true } });
    const seconds = ((last._max.appliedAt?.getTime() ?? Date.now()) - started) / 1000;
    await verify();
    const cpu = cpuPerNotification(before, after, N);
    const parseBatch = await meanBatch(port, processes, "wpn_worker_parse_batch_size");
    const applyBatch = await meanBatch(port, processes, "wpn_worker_apply_batch_size");
    return { impl, processes, seconds, perSecond: N / seconds, cpu, load: loadavg()[0] ?? 0, parseBatch, applyBatch };
  } finally {
    await workers.stop();
  }
}

/** Jobs per statement over the processes' lifetime, from their batch size histograms (`histogram`_sum / _count). */
async function meanBatch(basePort: number, processes: number, histogram: string): Promise<number> {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < processes; i++) {
    const text = await (await fetch(`http://127.0.0.1:${basePort + i}/metrics`)).text();
    const value = (name: string) => Number(text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m"))?.[1] ?? 0);
    sum += value(`${histogram}_sum`);
    count += value(`${histogram}_count`);
  }
  return count === 0 ? 0 : sum / count;
}

/** Every order paid once, two movements each, stock = initial − quantities. */
async function verify(): Promise<void> {
  const [row] = await prisma.$queryRaw<{ paid: number; movements: number; taken: number }[]>`
    SELECT (SELECT count(*)::int FROM "Order" WHERE status = 'SUCCESS' AND "outTradeNo" LIKE 'B%') AS paid,
           (SELECT count(*)::int FROM "InventoryMovement" WHERE "orderId" LIKE 'o%') AS movements,
           (SELECT (${SKUS}::bigint * 1000000 - sum(stock))::int FROM "Sku") AS taken`;
  if (row?.paid !== N || row.movements !== 2 * N || row.taken !== 3 * N)
    throw new Error(`inconsistent end state: ${JSON.stringify(row)}`);
}

interface LatencyRun {
  impl: "prisma" | "pg";
  rate: number;
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Slowest notification of the uncounted warm-up seconds, ms (absent in results from before the warm-up). */
  coldMax?: number;
}

async function latency(impl: "prisma" | "pg", jobs: ParseJobV3[], port: number): Promise<LatencyRun> {
  await resetData();
  await resetQueues();
  const workers = await startWorkers(impl, 2, port);
  // The first LATENCY_WARMUP_S seconds of traffic are not counted: freshly started processes plan their
  // statements, open their connections and JIT-compile while the first notifications wait (measured: up to ~2 s
  // for those, ~50 ms in steady state). Reported separately as `coldMax`.
  const count = Math.min(jobs.length, latencyRate * (15 + LATENCY_WARMUP_S));
  try {
    const tickMs = 20;
    const perTick = Math.max(1, Math.round((latencyRate * tickMs) / 1000));
    const start = Date.now();
    for (let i = 0; i < count; i += perTick) {
      const due = start + (i / latencyRate) * 1000;
      if (due > Date.now()) await sleep(due - Date.now());
      const batch = jobs.slice(i, Math.min(i + perTick, count));
      const now = Date.now();
      await parseQueue.addBulk(
        batch.map((j) => ({ name: PARSE_JOB_NAME, data: { ...j, receivedAt: now }, opts: { jobId: j.id } })),
      );
    }
    while ((await appliedCount()) < count) await sleep(100);
    const rows = await prisma.$queryRaw<{ ms: number; warm: boolean }[]>`
      SELECT (EXTRACT(EPOCH FROM ("appliedAt" - "receivedAt")) * 1000)::float8 AS ms,
             "receivedAt" >= (to_timestamp(${start / 1000 + LATENCY_WARMUP_S}::float8) AT TIME ZONE 'UTC') AS warm
      FROM "Notification" WHERE "outTradeNo" LIKE 'B%' ORDER BY 1`;
    const ms = rows.filter((r) => r.warm).map((r) => r.ms);
    const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] ?? Number.NaN;
    const coldMax = Math.max(...rows.filter((r) => !r.warm).map((r) => r.ms));
    return {
      impl,
      rate: latencyRate,
      count: ms.length,
      p50: q(0.5),
      p90: q(0.9),
      p99: q(0.99),
      max: ms.at(-1) ?? Number.NaN,
      coldMax,
    };
  } finally {
    await workers.stop();
  }
}

interface StatementRun {
  impl: string;
  perSecond: number;
  cpuMsPerOp: number;
}

/** One payment's transaction alone, POOL at a time from this process, no queue, no batching: where the difference comes from. */
async function statementOnly(impl: "prisma" | "pg", db: Db, count: number): Promise<StatementRun> {
  await resetData();
  await prisma.$executeRaw`INSERT INTO "Notification" (id, "eventType", "receivedAt", body, status)
    SELECT 'n' || g, 'TRANSACTION.SUCCESS', now() AT TIME ZONE 'UTC', '{}', 'PROCESSING' FROM generate_series(1, ${count}::int) g`;
  const facts = (i: number) => ({
    notificationId: `n${i}`,
    outTradeNo: `B${i}`,
    transactionId: `4200${String(i).padStart(16, "0")}`,
    mchid: merchant.mchid,
    appid: merchant.appid,
    subMchid: null,
    subAppid: null,
    total: 300,
    currency: "CNY",
    payerOpenid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    payerSpOpenid: null,
    paidAt: Date.now(),
  });
  let next = 1;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: POOL }, async () => {
      while (next <= count) {
        const i = next++;
        if (impl === "prisma") await applyPaymentStatement(db.prisma, facts(i));
        else await baselinePayment(db.pool, facts(i));
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { impl, perSecond: count / seconds, cpuMsPerOp: (cpu.user + cpu.system) / 1000 / count };
}

// ------------------------------------------------------------------------------------------------ main
const resultsFile = resolve(root, "bench/results/worker.json");
const reportFile = resolve(root, "bench/worker-report.md");

interface Results {
  date: string;
  command: string;
  machine: string;
  N: number;
  CONCURRENCY: number;
  /** PG_POOL_MAX; absent in results from before it was set apart from CONCURRENCY (it was CONCURRENCY). */
  POOL?: number;
  REPEATS: number;
  /** Rows of history the database held at the start of every run; absent in results from before it existed. */
  HISTORY?: number;
  statementCount: number;
  runs: ThroughputRun[];
  latencies: LatencyRun[];
  statements: StatementRun[];
}

async function describeMachine(): Promise<string> {
  const pgVersion = execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"])
    .toString()
    .trim();
  const redisVersion = (await redis.info("server")).match(/redis_version:(\S+)/)?.[1] ?? "?";
  return `${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${fmt(totalmem() / 2 ** 30)} GiB; Node ${process.version}; PostgreSQL ${pgVersion}; Redis ${redisVersion}`;
}

/** The report, from the numbers alone (`--report-only` re-renders it from bench/results/worker.json). */
function renderReport(r: Results): string {
  const { runs, latencies, statements } = r;
  const of = (impl: string, p: number) => runs.filter((x) => x.impl === impl && x.processes === p);
  const mean = (impl: string, p: number) => {
    const xs = of(impl, p).map((x) => x.perSecond);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const best = (impl: string, p: number) => Math.max(...of(impl, p).map((x) => x.perSecond));
  const cores = Number(r.machine.split(" ")[0]) || cpus().length;
  const cpuTotal = (impl: string, p: number) => {
    const rs = of(impl, p);
    return rs.reduce((a, x) => a + x.cpu.worker + x.cpu.postgres + x.cpu.redis, 0) / rs.length;
  };
  const label = (impl: string) => (impl === "prisma" ? "worker (Prisma)" : "baseline (raw pg)");
  // Process counts measured with both implementations (a run cut short may lack some).
  const counts = [1, 2, 4].filter((p) => of("prisma", p).length > 0 && of("pg", p).length > 0);
  const ratios = counts.map((p) => (100 * mean("prisma", p)) / mean("pg", p));
  const bestWorker = Math.max(...counts.map((p) => best("prisma", p)));
  const fastest = counts.reduce((a, b) => (mean("prisma", b) > mean("prisma", a) ? b : a), counts[0] ?? 1);
  const bestImplied = Math.max(...counts.map((p) => (cores * 1000) / cpuTotal("prisma", p)));
  const loads = runs.map((x) => x.load);
  const parseBatches = runs.flatMap((x) => (x.parseBatch === undefined ? [] : [x.parseBatch]));
  // The baseline's processes batch the same way, but run each payment of a batch as its own transaction.
  const applyBatches = runs.flatMap((x) => (x.impl !== "prisma" || x.applyBatch === undefined ? [] : [x.applyBatch]));
  const pool = r.POOL ?? r.CONCURRENCY;
  const range = (xs: number[]) => `${fmt(Math.min(...xs), 1)}–${fmt(Math.max(...xs), 1)}`;
  const latency = latencies.find((l) => l.impl === "prisma");
  const lines = [
    "# Worker benchmark",
    "",
    `Generated by \`${r.command}\` on ${r.date}.`,
    `Machine: ${r.machine}.`,
    "PostgreSQL, Redis, the worker processes and this driver all share those cores, as on a single small server.",
    "",
    "## Summary against the targets",
    "",
    `- **≥ 80% of the raw-pg baseline, same run, same concurrency**: worker / baseline = ${ratios.map((x) => `${fmt(x)}%`).join(", ")} with ${counts.join(", ")} processes — ${ratios.every((x) => x >= 80) ? "met" : "NOT met"}.`,
    `- **≥ 1,000 notifications/s end to end**: ${fmt(mean("prisma", fastest))}/s mean over ${of("prisma", fastest).length} runs with ${fastest} process${fastest === 1 ? "" : "es"}, the fastest count here (best run ${fmt(bestWorker)}/s) — ${mean("prisma", fastest) >= 1000 ? "met" : bestWorker >= 1000 ? "met by the best run only" : "NOT met on this machine"}.${fastest < Math.max(...counts) ? ` More processes than that share the same ${cores} cores with PostgreSQL and Redis, so each notification costs more CPU (table below); they pay off on more cores or machines.` : ""} The machine's 1-minute load average at the end of the runs was ${fmt(Math.min(...loads), 1)}–${fmt(Math.max(...loads), 1)} (mostly the benchmark itself: workers, PostgreSQL, Redis and this driver on ${cores} cores; check \`uptime\` before a run, other work on the machine lowers every figure); the CPU cost per notification below is the steadier figure and implies at most ~${fmt(bestImplied)}/s on ${cores} otherwise idle cores.`,
    latency
      ? `- **p99 enqueue → commit** at ${latency.rate}/s with 2 processes: ${fmt(latency.p99, 1)} ms (p50 ${fmt(latency.p50, 1)} ms)${latency.coldMax === undefined ? "" : `; up to ${fmt(latency.coldMax)} ms in the first ${LATENCY_WARMUP_S} s after the processes start, not counted`}.`
      : "- Latency: not measured in this run.",
    "",
    "## What runs",
    "",
    `- ${fmt(r.N)} signed APIv3 \`TRANSACTION.SUCCESS\` notifications, one per order, two items per order (${SKUS} SKUs), already in`,
    "  `notify.parse` (queue paused while adding); the worker processes start, report ready, then the queue is resumed.",
    "  The clock stops at the last commit (`max(Notification.appliedAt)`). Each notification is a parse job (decrypt,",
    "  validate, upsert the Notification row + timeline, enqueue apply) and an apply job (decrypt again, one",
    "  transaction: order, stock, movements, notification status, event). The end state is checked after every run",
    "  (every order SUCCESS, 2 movements each, stock reduced by exactly the quantities).",
    parseBatches.length === 0
      ? `- Every process: WORKER_CONCURRENCY=${r.CONCURRENCY} per queue, PG_POOL_MAX=${pool}, LOG_LEVEL=warn.`
      : applyBatches.length === 0
        ? `- Every process: WORKER_CONCURRENCY=${r.CONCURRENCY} (apply), WORKER_PARSE_CONCURRENCY at its default (parse jobs are recorded in batches: ${range(parseBatches)} jobs per statement), PG_POOL_MAX=${pool}, LOG_LEVEL=warn.`
        : `- Every process: WORKER_CONCURRENCY=${r.CONCURRENCY} (apply; payments are applied in batches: ${range(applyBatches)} jobs per statement), WORKER_PARSE_CONCURRENCY=${r.CONCURRENCY} (parse jobs are recorded in batches: ${range(parseBatches)} jobs per statement), PG_POOL_MAX=${pool}, LOG_LEVEL=warn.`,
    r.HISTORY === undefined
      ? "- Every run started on empty Notification and NotificationEvent tables."
      : `- Every run starts on a database that already holds ${fmt(r.HISTORY)} paid orders with their applied notifications and timelines\n  (yesterday's traffic; \`seedHistory\`), analyzed — the steady state of a running shop. On empty tables PostgreSQL's\n  statistics say "empty" and the plans it caches (the apply function's, the foreign-key checks') scan those tables\n  sequentially as a run fills them: a cold-start state autoanalyze ends within a minute in production.`,
    applyBatches.length === 0
      ? "- **worker (Prisma)** is the shipped code: the apply transaction is ONE statement (`prisma.$queryRaw`, a\n  data-modifying CTE) — one round trip, implicit transaction — sent as a named (prepared) statement."
      : "- **worker (Prisma)** is the shipped code: the payments of concurrent apply jobs are applied together, ONE\n  statement per batch (`applyPaymentStatements`: the PL/pgSQL function `wpn_apply_payments`) — one round trip,\n  one transaction — sent as a named (prepared) statement.",
    applyBatches.length === 0
      ? "- **baseline (raw pg)** is the same worker with only the payment transaction replaced by the same logic run\n  statement by statement on a raw `pg` client (BEGIN, 9–10 statements, COMMIT): `bench/worker-baseline.ts`."
      : "- **baseline (raw pg)** is the same worker with only the payment store replaced: each payment of a batch runs\n  the same logic as its own transaction, statement by statement, on its own pooled raw `pg` client, all at once\n  (BEGIN, a statement per step — 11 for its orders of two items —, COMMIT): `bench/worker-baseline.ts`.",
    `- Runs alternate between the two (${r.REPEATS} of each per process count); the table shows the mean and the best.`,
    "",
    "## Throughput, end to end (notifications/s)",
    "",
    "| processes | worker (Prisma), mean | best | baseline (raw pg), mean | best | worker / baseline (means) |",
    "|---|---|---|---|---|---|",
    ...counts.map(
      (p, i) =>
        `| ${p} | ${fmt(mean("prisma", p))} | ${fmt(best("prisma", p))} | ${fmt(mean("pg", p))} | ${fmt(best("pg", p))} | ${fmt(ratios[i] ?? 0)}% |`,
    ),
    "",
    "## CPU per notification",
    "",
    "CPU time (user + system, from /proc) used between resume and the last commit by the worker processes, by their",
    "PostgreSQL backends, and by the Redis server (shared with anything else using it during the run, so an upper",
    "bound), divided by the notifications. It depends much less than throughput on what else the machine runs (though",
    "contention still inflates it); the last column is what it implies for the same cores doing nothing else:",
    "cores × 1000 / total.",
    "",
    "| implementation | processes | worker ms | PostgreSQL ms | Redis ms | total ms | implied capacity /s |",
    "|---|---|---|---|---|---|---|",
    ...(["prisma", "pg"] as const).flatMap((impl) =>
      counts.map((p) => {
        const rs = of(impl, p);
        const avg = (f: (x: ThroughputRun) => number) => rs.reduce((a, x) => a + f(x), 0) / rs.length;
        const cells = [avg((x) => x.cpu.worker), avg((x) => x.cpu.postgres), avg((x) => x.cpu.redis)].map((v) =>
          fmt(v, 2),
        );
        return `| ${label(impl)} | ${p} | ${cells.join(" | ")} | ${fmt(cpuTotal(impl, p), 2)} | ${fmt((cores * 1000) / cpuTotal(impl, p))} |`;
      }),
    ),
    "",
    "Individual runs (whole batch; 1-minute load average at the end of the run):",
    "",
    ...runs.map(
      (x) =>
        `- ${x.impl === "prisma" ? "worker  " : "baseline"} P=${x.processes}: ${fmt(x.perSecond)}/s (${fmt(x.seconds, 2)} s; load ${fmt(x.load, 1)})`,
    ),
    "",
    "## Latency, enqueue → commit",
    "",
    `Notifications added to \`notify.parse\` at a steady rate (half the measured 2-process throughput) for ${fmt(latencies[0]?.count ?? 0)} counted notifications,`,
    "2 worker processes running; time from the enqueue (`receivedAt`) to the commit (`appliedAt`), both stages included.",
    latencies.some((l) => l.coldMax !== undefined)
      ? `The first ${LATENCY_WARMUP_S} s of traffic after the processes start are not counted (statements planned, connections opened, code JIT-compiled while the first notifications wait); the slowest of them is the last column.`
      : "All notifications counted, the first seconds after the processes start included.",
    "",
    "| implementation | rate /s | p50 ms | p90 ms | p99 ms | max ms | warm-up max ms |",
    "|---|---|---|---|---|---|---|",
    ...latencies.map(
      (l) =>
        `| ${label(l.impl)} | ${l.rate} | ${fmt(l.p50, 1)} | ${fmt(l.p90, 1)} | ${fmt(l.p99, 1)} | ${fmt(l.max, 1)} | ${l.coldMax === undefined ? "—" : fmt(l.coldMax, 1)} |`,
    ),
    "",
    "## The apply transaction alone (no queue, context)",
    "",
    `${fmt(r.statementCount)} payments applied from one process, one per statement (no batching), ${pool} at a time; Node CPU per payment from \`process.cpuUsage()\`.`,
    "",
    "| implementation | payments/s | Node CPU ms per payment |",
    "|---|---|---|",
    ...statements.map(
      (x) =>
        `| ${x.impl === "prisma" ? "Prisma, one prepared statement" : "raw pg, statement by statement"} | ${fmt(x.perSecond)} | ${fmt(x.cpuMsPerOp, 3)} |`,
    ),
    "",
  ];
  return `${lines.join("\n")}\n`;
}

// Interrupted (Ctrl-C, or killed): stop the worker processes and drop the schema and keys, then exit.
const running = new Set<ChildProcess>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    for (const child of running) child.kill("SIGKILL");
    Promise.allSettled([deletePrefix(prefix), test.drop()]).finally(() => process.exit(130));
  });
}

/** Ends an `--only` run after its throughput runs (through the cleanup in `finally`). */
class OnlyDone extends Error {}
const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
try {
  if (args["report-only"]) {
    writeFileSync(reportFile, renderReport(JSON.parse(readFileSync(resultsFile, "utf8")) as Results));
    throw new OnlyDone();
  }
  console.log(`building ${N} signed notifications…`);
  const jobs = buildNotifications();
  const results: Results = {
    date: new Date().toISOString().slice(0, 10),
    command: `npx tsx bench/worker.ts --notifications ${N} --concurrency ${CONCURRENCY} --pool ${POOL} --repeats ${REPEATS} --history ${HISTORY}`,
    machine: await describeMachine(),
    N,
    CONCURRENCY,
    POOL,
    REPEATS,
    HISTORY,
    statementCount: Math.min(N, 5_000),
    runs: [],
    latencies: [],
    statements: [],
  };
  // Saved after every measurement: a run cut short still leaves its numbers (re-render with --report-only).
  const save = () => {
    mkdirSync(resolve(root, "bench/results"), { recursive: true });
    writeFileSync(resultsFile, JSON.stringify(results, null, 2));
  };
  const { runs, latencies, statements, statementCount } = results;
  // Health ports below the ephemeral range (Linux: 32768–60999): polling a port nobody listens on yet from
  // 127.0.0.1 can connect a socket to itself when the kernel picks that very port as the source, and the
  // worker then fails to listen (EADDRINUSE) for the minute the connection lingers in TIME_WAIT.
  let port = 29_400;
  const only = args.only?.split(",");
  for (const processes of [1, 2, 4]) {
    for (let r = 0; r < REPEATS; r++) {
      for (const impl of r % 2 === 0 ? (["prisma", "pg"] as const) : (["pg", "prisma"] as const)) {
        if (only && !only.includes(`${impl}:${processes}`)) continue;
        port += 10;
        const run = await throughput(impl, processes, jobs, port);
        console.log(
          `${impl.padEnd(6)} P=${processes}: ${fmt(run.perSecond)} notifications/s (${fmt(run.seconds, 2)} s); CPU ms/notification: worker ${fmt(run.cpu.worker, 2)}, postgres ${fmt(run.cpu.postgres, 2)}, redis ${fmt(run.cpu.redis, 2)}; parse jobs/statement ${fmt(run.parseBatch ?? 0, 1)}; apply jobs/statement ${fmt(run.applyBatch ?? 0, 1)}; load ${loadavg()[0]?.toFixed(1)}`,
        );
        runs.push(run);
        save();
      }
    }
  }
  const latencyOnly = (["prisma", "pg"] as const).filter((impl) => only?.includes(`latency:${impl}`));
  if (only && latencyOnly.length === 0) throw new OnlyDone();
  if (!latencyRate) {
    const p2 = runs.filter((r) => r.impl === "prisma" && r.processes === 2).map((r) => r.perSecond);
    latencyRate = Math.max(10, Math.round(p2.reduce((a, b) => a + b, 0) / p2.length / 2 / 10) * 10);
  }
  for (const impl of only ? latencyOnly : (["prisma", "pg"] as const)) {
    port += 10;
    const l = await latency(impl, jobs, port);
    console.log(`latency ${impl}: p50 ${fmt(l.p50, 1)} ms, p99 ${fmt(l.p99, 1)} ms at ${l.rate}/s`);
    latencies.push(l);
    save();
  }
  if (only) throw new OnlyDone();
  // As the worker creates it: Prisma's statements are named (prepared once per connection).
  const statementDb = createDb({ url: test.url, poolMax: POOL, preparedStatements: true });
  try {
    for (const impl of ["prisma", "pg", "prisma", "pg"] as const) {
      const s = await statementOnly(impl, statementDb, statementCount);
      console.log(`statement only ${impl}: ${fmt(s.perSecond)}/s, ${fmt(s.cpuMsPerOp, 3)} ms CPU/op`);
      statements.push(s);
      save();
    }
  } finally {
    await statementDb.close();
  }

  writeFileSync(reportFile, renderReport(results));
  console.log("wrote bench/worker-report.md");
} catch (error) {
  if (!(error instanceof OnlyDone)) throw error;
} finally {
  await parseQueue.close();
  await applyQueue.close();
  redis.disconnect();
  await deletePrefix(prefix);
  await test.drop();
}
