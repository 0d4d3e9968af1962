import { DEFAULT_PORT } from "@wpn/config";
import { boolFlag, databaseUrl, enumFlag, intFlag, numberFlag, requireKeys } from "../args.ts";
import { connect, redact } from "../db.ts";
import { ANSWER_TIMEOUT_MS } from "../deliver.ts";
import { EXIT, type Io, println, UsageError } from "../io.ts";
import { appendJournal, checkJournalWritable, type JournalEntry } from "../journal.ts";
import { checkDatabase, type DatabaseCheck } from "../load/check.ts";
import { planSequence, runEngine, type UnacknowledgedDelivery } from "../load/engine.ts";
import { ProgressBar } from "../load/progress.ts";
import { buildReport, formatReport, type NeverAcknowledged } from "../load/report.ts";
import { MAX_RESENDS, resendScheduleMs } from "../load/resend.ts";
import { type LoadSet, newRunId, readExistingOrders, seedOrders, unseededOrders } from "../load/seed.ts";
import {
  type Api,
  newOpenid,
  newTransactionId,
  type Payment,
  V2_SIGN_TYPES,
  v2Payment,
  v3Payment,
} from "../notifications.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";
import { merchant, notifyUrl, signerFlag } from "./send.ts";

export const LOAD_LIMITS = {
  count: 100_000,
  concurrency: 1_000,
  rate: 100_000,
  maxSeconds: 3_600,
  settleSeconds: 3_600,
};

export const loadCommand: Command = {
  name: "load",
  summary: "send N unique payment notifications (plus duplicates) at a rate and check the database",
  options: {
    url: { type: "string" },
    keys: { type: "string" },
    v2: { type: "boolean" },
    "sign-type": { type: "string" },
    signer: { type: "string" },
    count: { type: "string" },
    rate: { type: "string" },
    concurrency: { type: "string" },
    duplicates: { type: "string" },
    "max-seconds": { type: "string" },
    "timeout-ms": { type: "string" },
    "database-url": { type: "string" },
    existing: { type: "boolean" },
    skus: { type: "string" },
    stock: { type: "string" },
    "settle-seconds": { type: "string" },
    resend: { type: "boolean" },
    "resend-schedule": { type: "string" },
    "time-scale": { type: "string" },
    mchid: { type: "string" },
    appid: { type: "string" },
    json: { type: "boolean" },
  },
  maxPositionals: 0,
  help: `wechatpay-sim load — many payment notifications, then an end-to-end check of the database

Pays N orders with one unique notification each, plus duplicates (re-sends of an earlier notification: same
id, fresh signature, possibly concurrent with the original), at a target rate or as fast as the concurrency
allows. A progress bar runs on stderr when it is a terminal. At the end it reports throughput, latency
p50/p90/p99/max, answers by status, and — with a database — waits for the workers and checks that every
acknowledged order is paid, that stock moved exactly once (stock == initial − paid quantities) and that there
is one PAYMENT movement per (order, SKU). By default an unacknowledged delivery is counted, not resent; with
--resend or --resend-schedule it is resent as WeChat resends an unacknowledged notification — the same
notification (same id, same encrypted body) re-signed with a fresh timestamp and nonce — until acknowledged or the
schedule runs out, and the check then requires every order acknowledged at some attempt to be applied exactly once,
listing the notifications never acknowledged apart.

Orders:
  with --database-url or $DATABASE_URL: inserts N NOTPAY orders (two items each on distinct SKUs of the
      run's own, plain SQL on Sku/Order/OrderItem), or with --existing reads up to N NOTPAY orders of the
      merchant that are already there;
  without a database: orders exist only in the notifications; no final check (the report says so).

Usage: wechatpay-sim load [--count N] [--rate R] [--concurrency C] [--duplicates F] [options]

Options:
  --count N            unique notifications/orders (default 100, at most ${LOAD_LIMITS.count})
  --rate R             target deliveries per second (default: as fast as possible)
  --concurrency C      deliveries in flight at most (default 16, at most ${LOAD_LIMITS.concurrency})
  --duplicates F       extra deliveries as a fraction of N (0.3 → 30 duplicates per 100; default 0, max 10)
  --max-seconds S      stop sending after S seconds (default 300, at most ${LOAD_LIMITS.maxSeconds})
  --timeout-ms MS      answer time limit per delivery (default ${ANSWER_TIMEOUT_MS}, WeChat's)
  --database-url URL   merchant database (default $DATABASE_URL; none: no seeding, no check)
  --existing           pay existing NOTPAY orders instead of seeding new ones
  --skus K             SKUs to seed (default 20)
  --stock S            initial stock per seeded SKU (default 3 × N: never runs out)
  --settle-seconds S   how long to wait for the workers before checking (default 30)
  --resend             resend each unacknowledged delivery on WeChat's schedule until acknowledged (v3: 15s 15s
                       30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h; v2: 15s 15s 30s 3m 30m 30m 30m 30m 60m)
  --time-scale F       with --resend: multiply WeChat's waits by F (0.001: 15 s → 15 ms; default 1)
  --resend-schedule L  resend on this schedule instead: comma-separated waits with a unit (ms, s, m, h), e.g.
                       1s,2s,5s,10s (at most ${MAX_RESENDS} steps, each 1ms to 6h); implies --resend
                       --max-seconds bounds the whole run: a resend due after it is not sent (reported)
  --url URL            notify URL (default http://127.0.0.1:$PORT/notify/v3, with --v2 …/notify/v2;
                       PORT from the environment or .env, else ${DEFAULT_PORT})
  --keys DIR           keys folder (default $WECHATPAY_SIM_KEYS or .dev/keys)
  --v2, --sign-type T  APIv2 XML notifications (MD5 or HMAC-SHA256)
  --signer WHO         v3 key: public-key (default) or certificate
  --mchid, --appid     override the merchant of the keys folder
  --json               print the report as JSON on stdout

Examples:
  npm run sim -- load --count 1000 --rate 200 --duplicates 0.3
  npm run sim -- load --count 2000 --rate 100 --resend-schedule 1s,2s,5s,10s,30s    # across a restart
  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/wechatpay_notify npx wechatpay-sim load --count 5000 --concurrency 64 --json

Exit: 0 when every delivery was acknowledged (with --resend: at some attempt) and the database check passed;
1 when the database check failed (an acknowledged payment not applied, or stock moved other than once) or a
delivery was never acknowledged (with --resend: after the whole schedule) or --max-seconds stopped the run;
3 when the only failures were deliveries whose last attempt could not connect (receiver unreachable) — a failed
database check is 1 even then.

${HELP_EXIT_CODES}`,
  async run({ values }, io: Io) {
    const api: Api = boolFlag(values, "v2") ? "v2" : "v3";
    const signType = enumFlag(values, "sign-type", V2_SIGN_TYPES) ?? "MD5";
    if (values["sign-type"] !== undefined && api !== "v2") {
      throw new UsageError("--sign-type applies to APIv2 notifications only: add --v2", "--sign-type");
    }
    const signer = signerFlag(values, api);
    const url = notifyUrl(values, io, api);
    const count = intFlag(values, "count", { min: 1, max: LOAD_LIMITS.count, what: "a count" }) ?? 100;
    const rate = numberFlag(values, "rate", {
      min: 0,
      max: LOAD_LIMITS.rate,
      minExclusive: true,
      what: "deliveries per second",
    });
    const concurrency = intFlag(values, "concurrency", { min: 1, max: LOAD_LIMITS.concurrency, what: "a count" }) ?? 16;
    const duplicateRatio = numberFlag(values, "duplicates", { min: 0, max: 10, what: "a fraction" }) ?? 0;
    const maxSeconds =
      numberFlag(values, "max-seconds", { min: 0, max: LOAD_LIMITS.maxSeconds, minExclusive: true, what: "seconds" }) ??
      300;
    const timeoutMs =
      intFlag(values, "timeout-ms", { min: 1, max: 600_000, what: "milliseconds" }) ?? ANSWER_TIMEOUT_MS;
    const skuCount = intFlag(values, "skus", { min: 2, max: 10_000, what: "a count" }) ?? 20;
    const stock = intFlag(values, "stock", { min: 0, max: 1_000_000_000, what: "a count" });
    const settleSeconds =
      numberFlag(values, "settle-seconds", { min: 0, max: LOAD_LIMITS.settleSeconds, what: "seconds" }) ?? 30;
    const resendSchedule = resendScheduleMs(values, api);
    const existing = boolFlag(values, "existing");
    const json = boolFlag(values, "json");
    const keys = requireKeys(values, io);
    checkJournalWritable(keys.dir);
    const { mchid, appid } = merchant(values, keys);
    const dbUrl = databaseUrl(values, io);
    if (existing && dbUrl === undefined)
      throw new UsageError("--existing needs --database-url or DATABASE_URL", "--existing");
    if (existing && (values.skus !== undefined || values.stock !== undefined)) {
      throw new UsageError(
        "--skus/--stock seed new orders: --existing pays orders already there, on their own SKUs",
        values.skus ? "--skus" : "--stock",
      );
    }
    if (dbUrl === undefined && (values.skus !== undefined || values.stock !== undefined)) {
      throw new UsageError(
        "--skus/--stock seed the database: give --database-url or DATABASE_URL",
        values.skus ? "--skus" : "--stock",
      );
    }

    const runId = newRunId();
    let set: LoadSet;
    if (dbUrl === undefined) set = unseededOrders(count, runId, mchid);
    else {
      // Closed once the orders are read: the run lasts minutes, and PostgreSQL may be restarted meanwhile (which is
      // what the run may be proving exactly-once against); the check opens a connection of its own.
      const client = await connect(dbUrl);
      try {
        if (existing) set = await readExistingOrders(client, { count, mchid, runId });
        else
          set = await seedOrders(client, {
            count,
            runId,
            mchid,
            appid,
            skuCount,
            ...(stock === undefined ? {} : { stock }),
          });
      } finally {
        await client.end();
      }
    }
    if (set.orders.length === 0) {
      throw new UsageError(`--existing: no NOTPAY orders of merchant ${mchid} in ${redact(dbUrl ?? "")}`, "--existing");
    }
    if (!json) {
      const where =
        dbUrl === undefined ? "no database" : `${set.mode === "seed" ? "seeded" : "read"} in ${redact(dbUrl ?? "")}`;
      println(io.stderr, `load ${runId}: ${set.orders.length} orders (${where}) → ${url}`);
    }

    const now = new Date();
    const payments: Payment[] = set.orders.map((o) => ({
      mchid,
      appid,
      outTradeNo: o.outTradeNo,
      transactionId: newTransactionId(),
      amount: o.amount,
      openid: newOpenid(),
      successTime: now,
    }));
    const sequence = planSequence(payments.length, duplicateRatio);
    const ids: string[] = [];
    const notificationFor = (index: number) => {
      const payment = payments[index] as Payment;
      const n = api === "v3" ? v3Payment(keys, payment, { signer }) : v2Payment(keys, payment, signType);
      ids[index] = n.id;
      return n;
    };
    const progress = new ProgressBar(io.stderr, sequence.length);
    const engine = await runEngine({
      url,
      sequence,
      notificationFor,
      concurrency,
      ...(rate === undefined ? {} : { rate }),
      maxSeconds,
      timeoutMs,
      ...(resendSchedule === null ? {} : { resendScheduleMs: resendSchedule }),
      signal: io.signal,
      onProgress: (done, failed) => progress.update(done, failed),
    });
    progress.stop();
    const journal: JournalEntry[] = [];
    payments.forEach((p, i) => {
      if (ids[i] === undefined) return; // never sent (stopped early)
      journal.push({
        type: "pay",
        at: now.toISOString(),
        api,
        mchid: p.mchid,
        appid: p.appid,
        outTradeNo: p.outTradeNo,
        transactionId: p.transactionId,
        amount: p.amount,
        openid: p.openid,
        successTime: p.successTime.toISOString(),
        notificationId: ids[i] as string,
      });
    });
    appendJournal(keys.dir, journal);

    let database: DatabaseCheck | null = null;
    let databaseSkipped: string | undefined;
    if (dbUrl !== undefined && !io.signal.aborted) {
      if (!json) println(io.stderr, `waiting up to ${settleSeconds} s for the workers…`);
      const acknowledged = new Set([...engine.acknowledgedIndexes].map((i) => payments[i]?.outTradeNo as string));
      const client = await connect(dbUrl);
      try {
        database = await checkDatabase(client, set, acknowledged, { settleSeconds, signal: io.signal });
      } finally {
        await client.end();
      }
    } else {
      databaseSkipped = dbUrl === undefined ? "no --database-url / DATABASE_URL given" : "interrupted";
    }
    const report = buildReport({
      url,
      api,
      set,
      engine,
      settings: {
        concurrency,
        rate: rate ?? null,
        duplicateRatio,
        maxSeconds,
        timeoutMs,
        resendScheduleMs: resendSchedule,
      },
      neverAcknowledged: neverAcknowledged(engine.unacknowledged, engine.acknowledgedIndexes, ids, payments),
      database,
      ...(databaseSkipped ? { databaseSkipped } : {}),
    });
    println(io.stdout, json ? JSON.stringify(report, null, 2) : formatReport(report));
    if (io.signal.aborted) return EXIT.INTERRUPTED;
    if (report.ok) return EXIT.OK;
    // A lost or doubled payment outranks an unreachable receiver: 3 only when nothing but connections failed.
    const databaseFailed = database !== null && !database.ok;
    const onlyNetwork = engine.notAcknowledged > 0 && engine.networkErrors === engine.notAcknowledged;
    return onlyNetwork && !databaseFailed ? EXIT.NETWORK : EXIT.WRONG_ANSWER;
  },
};

/**
 * The notifications sent whose deliveries all ended unacknowledged (a notification with one delivery acknowledged
 * is not among them), each once: its attempts over all its deliveries, the verdict on the last one to end.
 */
function neverAcknowledged(
  unacknowledged: readonly UnacknowledgedDelivery[],
  acknowledgedIndexes: ReadonlySet<number>,
  ids: readonly (string | undefined)[],
  payments: readonly Payment[],
): NeverAcknowledged[] {
  const byIndex = new Map<number, NeverAcknowledged>();
  for (const d of unacknowledged) {
    if (acknowledgedIndexes.has(d.index)) continue;
    const seen = byIndex.get(d.index);
    if (seen !== undefined) {
      seen.attempts += d.attempts;
      seen.lastReason = d.lastReason;
      continue;
    }
    byIndex.set(d.index, {
      id: ids[d.index] as string,
      outTradeNo: (payments[d.index] as Payment).outTradeNo,
      attempts: d.attempts,
      lastReason: d.lastReason,
    });
  }
  return [...byIndex.values()];
}
