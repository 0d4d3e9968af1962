import { DEFAULT_DATABASE_URL } from "@wpn/config";
import { amountFlag, boolFlag, databaseUrl, requireKeys, tradeNoFlag } from "../args.ts";
import { closeOrder, connect, redact } from "../db.ts";
import { EXIT, type Io, println, UsageError } from "../io.ts";
import { appendJournal, findOrder } from "../journal.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";
import { DEFAULT_AMOUNT, paymentFromFlags, seedOrder, sendPayment } from "./pay.ts";
import { checkOrderFlags, merchant, SEND_HELP, SEND_OPTIONS, sendSettings } from "./send.ts";

/**
 * WeChat Pay sends no notification when an order is closed: the merchant closes it (close API) and that is
 * the end of it. What can go wrong is a payment arriving for an order the merchant already closed (the
 * payer paid just before the close took effect, or the order was closed locally only). So `close`:
 * 1. records the close in the simulator's journal (`serve` then answers trade_state CLOSED, unless it was paid);
 * 2. with a database, sets the merchant's Order row from NOTPAY to CLOSED, as the merchant's shop does
 *    after calling the close API;
 * 3. with --then-pay, sends a TRANSACTION.SUCCESS for that very order: the PAID_AFTER_CLOSE case.
 */
/** The options that only shape the payment --then-pay sends (not --keys, --mchid, --appid, --amount, --json). */
const PAYMENT_ONLY_OPTIONS = [
  "url",
  "v2",
  "sign-type",
  "signer",
  "no-retry",
  "time-scale",
  "timeout-ms",
  "transaction-id",
  "openid",
] as const;

export const closeCommand: Command = {
  name: "close",
  summary: "close an order (no notification exists); --then-pay pays it anyway (PAID_AFTER_CLOSE)",
  options: {
    ...SEND_OPTIONS,
    openid: { type: "string" },
    "database-url": { type: "string" },
    "then-pay": { type: "boolean" },
    seed: { type: "boolean" },
  },
  maxPositionals: 0,
  help: `wechatpay-sim close — close an order, optionally pay it afterwards

WeChat Pay sends NO notification when an order is closed. This command therefore:
  1. records the close in the journal of the keys folder (\`serve\` answers trade_state CLOSED; a paid
     order stays SUCCESS or REFUND);
  2. with --database-url or $DATABASE_URL, sets the merchant's Order row from NOTPAY to CLOSED, as the
     merchant's shop does after calling WeChat's close API (other statuses are left alone; only the row of
     --mchid or the keys folder's merchant: another merchant's order of the same number is not touched);
  3. with --then-pay, then sends a payment notification for that order: the "paid after close" race.
     A correct merchant system acknowledges it (HTTP 200/204: the money was taken, WeChat must stop
     redelivering) and flags the order for review (PAID_AFTER_CLOSE) instead of marking it paid.
Without --then-pay nothing is sent to the notify URL, and the delivery options and --openid are refused (exit 2).

Usage: wechatpay-sim close --out-trade-no NO [--then-pay] [options]

Options:
  --out-trade-no NO      the order to close (required)
  --amount FEN           order amount, fen (default: the journal's, else ${DEFAULT_AMOUNT})
  --database-url URL     the merchant database whose Order row is closed (default $DATABASE_URL; none: skip)
  --seed                 first insert the order (NOTPAY, two demo items) into the database, then close it
                         (database: --database-url, $DATABASE_URL, else ${DEFAULT_DATABASE_URL})
  --then-pay             afterwards send TRANSACTION.SUCCESS for the order
  --openid ID            payer openid of that payment (default: a random oSim… id)

${SEND_HELP}

Examples:
  npm run sim -- close --out-trade-no ORDER123
  npm run sim -- close --seed --out-trade-no LATE-1 --then-pay      # PAID_AFTER_CLOSE in one command

${HELP_EXIT_CODES}`,
  async run({ values }, io: Io) {
    const outTradeNo = tradeNoFlag(values, "out-trade-no");
    if (outTradeNo === undefined)
      throw new UsageError("--out-trade-no is required: which order to close", "--out-trade-no");
    const thenPay = boolFlag(values, "then-pay");
    if (!thenPay) {
      // Without --then-pay nothing is sent: an option that shapes the sending would be silently ignored.
      const unused = PAYMENT_ONLY_OPTIONS.find((name) => values[name] !== undefined);
      if (unused !== undefined)
        throw new UsageError(
          `--${unused} is for the payment of --then-pay: add --then-pay, or leave it out`,
          `--${unused}`,
        );
    }
    const settings = sendSettings(values, io);
    checkOrderFlags(values);
    const keys = requireKeys(values, io);
    const { mchid, appid } = merchant(values, keys);
    const known = findOrder(keys.dir, mchid, outTradeNo);
    const amount = amountFlag(values) ?? known?.amount ?? DEFAULT_AMOUNT;
    const lines: string[] = ["WeChat Pay sends no notification when an order is closed."];
    if (known?.tradeState === "SUCCESS" || known?.tradeState === "REFUND") {
      lines.push(`note: the journal shows order ${outTradeNo} as paid; WeChat would refuse to close it (ORDERPAID)`);
    }
    let dbUrl = databaseUrl(values, io);
    if (boolFlag(values, "seed")) {
      dbUrl ??= DEFAULT_DATABASE_URL;
      lines.push(await seedOrder(dbUrl, { outTradeNo, mchid, appid, amount }));
    }
    appendJournal(keys.dir, [{ type: "close", at: new Date().toISOString(), mchid, appid, outTradeNo, amount }]);
    // A paid order stays paid (SUCCESS, or REFUND): only an unpaid one becomes CLOSED, as the journal reads it back.
    const state = findOrder(keys.dir, mchid, outTradeNo)?.tradeState;
    lines.push(`closed order ${outTradeNo} in the simulator's journal (order queries answer trade_state ${state})`);
    let database: { url: string; before: string | undefined; closed: boolean } | undefined;
    if (dbUrl !== undefined) {
      const client = await connect(dbUrl);
      try {
        const r = await closeOrder(client, { outTradeNo, mchid });
        database = { url: redact(dbUrl), ...r };
      } finally {
        await client.end();
      }
      lines.push(
        database.closed
          ? `set Order ${outTradeNo} from NOTPAY to CLOSED in ${database.url}`
          : database.before === undefined
            ? `no Order ${outTradeNo} of merchant ${mchid} in ${database.url}: nothing to close there`
            : `Order ${outTradeNo} is ${database.before} in ${database.url}: left unchanged (only NOTPAY orders are closed)`,
      );
    } else {
      lines.push("no --database-url / DATABASE_URL: the merchant's Order row was not touched");
    }
    if (!settings.json) {
      for (const line of lines) println(io.stdout, line);
      println(io.stdout, "");
    }
    if (!thenPay) {
      if (settings.json)
        println(
          io.stdout,
          JSON.stringify({ command: "close", outTradeNo, notes: lines, database, sent: false }, null, 2),
        );
      return EXIT.OK;
    }
    if (!settings.json) {
      println(
        io.stdout,
        "--then-pay: the payer paid anyway. A correct receiver acknowledges (200/204) and flags PAID_AFTER_CLOSE.",
      );
      println(io.stdout, "");
    }
    const { payment, notes } = paymentFromFlags({ ...values, amount: String(amount) }, keys);
    return sendPayment(io, settings, keys, payment, [...(settings.json ? lines : []), ...notes]);
  },
};
