import { DEFAULT_PORT } from "@wpn/config";
import { boolFlag, databaseUrl, enumFlag, intFlag, numberFlag, requireKeys } from "../args.ts";
import { connect, redact } from "../db.ts";
import { ANSWER_TIMEOUT_MS } from "../deliver.ts";
import { EXIT, type Io, println, UsageError } from "../io.ts";
import { appendJournal, type JournalEntry } from "../journal.ts";
import { checkDatabase, type DatabaseCheck } from "../load/check.ts";
import { planSequence, runEngine } from "../load/engine.ts";
import { ProgressBar } from "../load/progress.ts";
import { buildReport, formatReport } from "../load/report.ts";
import { type LoadSet, newRunId, readExistingOrders, seedOrders, unseededOrders } from "../load/seed.ts";
import {
  type Api,
  newOpenid,
  newTransactionId,
  type Payment,
  SIGNERS,
  V2_SIGN_TYPES,
  v2Payment,
  v3Payment,
} from "../notifications.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";
import { merchant, notifyUrl } from "./send.ts";

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
is one PAYMENT movement per (order, SKU). Redelivery schedules are not followed: an unacknowledged
delivery is counted, not retried.

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
  --url URL            notify URL (default http://127.0.0.1:$PORT/notify/v3, with --v2 …/notify/v2;
                       PORT from the environment or .env, else ${DEFAULT_PORT})
  --keys DIR           keys folder (default $WECHATPAY_SIM_KEYS or .dev/keys)
  --v2, --sign-type T  APIv2 XML notifications (MD5 or HMAC-SHA256)
  --signer WHO         v3 key: public-key (default) or certificate
  --mchid, --appid     override the merchant of the keys folder
  --json               print the report as JSON on stdout

Examples:
  npm run sim -- load --count 1000 --rate 200 --duplicates 0.3
  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/wechatpay_notify npx wechatpay-sim load --count 5000 --concurrency 64 --json

Exit: 0 when every delivery was acknowledged and the database check passed; 1 otherwise; 3 when the
failures were connection errors (receiver or database unreachable).

${HELP_EXIT_CODES}`,
  async run({ values }, io: Io) {
    const api: Api = boolFlag(values, "v2") ? "v2" : "v3";
    const signType = enumFlag(values, "sign-type", V2_SIGN_TYPES) ?? "MD5";
    if (values["sign-type"] !== undefined && api !== "v2") {
      throw new UsageError("--sign-type applies to APIv2 notifications only: add --v2", "--sign-type");
    }
    const signer = enumFlag(values, "signer", SIGNERS) ?? "public-key";
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
    const existing = boolFlag(values, "existing");
    const json = boolFlag(values, "json");
    const keys = requireKeys(values, io);
    const { mchid, appid } = merchant(values, keys);
    const dbUrl = databaseUrl(values, io);
    if (existing && dbUrl === undefined)
      throw new UsageError("--existing needs --database-url or DATABASE_URL", "--existing");
    if (dbUrl === undefined && (values.skus !== undefined || values.stock !== undefined)) {
      throw new UsageError(
        "--skus/--stock seed the database: give --database-url or DATABASE_URL",
        values.skus ? "--skus" : "--stock",
      );
    }

    const runId = newRunId();
    const client = dbUrl === undefined ? undefined : await connect(dbUrl);
    try {
      let set: LoadSet;
      if (client === undefined) set = unseededOrders(count, runId);
      else if (existing) set = await readExistingOrders(client, { count, mchid, runId });
      else
        set = await seedOrders(client, {
          count,
          runId,
          mchid,
          appid,
          skuCount,
          ...(stock === undefined ? {} : { stock }),
        });
      if (set.orders.length === 0) {
        throw new UsageError(
          `--existing: no NOTPAY orders of merchant ${mchid} in ${redact(dbUrl ?? "")}`,
          "--existing",
        );
      }
      if (!json) {
        const where =
          client === undefined ? "no database" : `${set.mode === "seed" ? "seeded" : "read"} in ${redact(dbUrl ?? "")}`;
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
      if (client !== undefined && !io.signal.aborted) {
        if (!json) println(io.stderr, `waiting up to ${settleSeconds} s for the workers…`);
        const acknowledged = new Set([...engine.acknowledgedIndexes].map((i) => payments[i]?.outTradeNo as string));
        database = await checkDatabase(client, set, acknowledged, { settleSeconds, signal: io.signal });
      } else {
        databaseSkipped = client === undefined ? "no --database-url / DATABASE_URL given" : "interrupted";
      }
      const report = buildReport({
        url,
        api,
        set,
        engine,
        settings: { concurrency, rate: rate ?? null, duplicateRatio, maxSeconds, timeoutMs },
        database,
        ...(databaseSkipped ? { databaseSkipped } : {}),
      });
      println(io.stdout, json ? JSON.stringify(report, null, 2) : formatReport(report));
      if (io.signal.aborted) return EXIT.INTERRUPTED;
      if (report.ok) return EXIT.OK;
      const onlyNetwork = engine.notAcknowledged > 0 && engine.networkErrors === engine.notAcknowledged;
      return onlyNetwork ? EXIT.NETWORK : EXIT.WRONG_ANSWER;
    } finally {
      await client?.end();
    }
  },
};
