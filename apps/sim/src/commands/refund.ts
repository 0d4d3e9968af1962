import { amountFlag, enumFlag, intFlag, requireKeys, stringFlag, tradeNoFlag } from "../args.ts";
import { type Io, println, UsageError } from "../io.ts";
import { appendJournal, findOrder, findRefund, orderKey, orderStates, readJournal } from "../journal.ts";
import {
  newOutRefundNo,
  newRefundId,
  newTransactionId,
  REFUND_STATUSES,
  type Refund,
  v2Refund,
  v3Refund,
} from "../notifications.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";
import { checkOrderFlags, deliverAndReport, merchant, SEND_HELP, SEND_OPTIONS, sendSettings } from "./send.ts";

/** The merchant's order of the journal's last payment that is still paid (or refunded): the journal is in time order. */
function latestPaidOrder(keysDir: string, mchid: string): string | undefined {
  const journal = readJournal(keysDir);
  const states = orderStates(journal);
  for (let i = journal.length - 1; i >= 0; i--) {
    const entry = journal[i];
    if (entry?.type !== "pay" || entry.mchid !== mchid) continue;
    const state = states.get(orderKey(mchid, entry.outTradeNo))?.tradeState;
    if (state === "SUCCESS" || state === "REFUND") return entry.outTradeNo;
  }
  return undefined;
}

export const refundCommand: Command = {
  name: "refund",
  summary: "send a refund notification (REFUND.SUCCESS/ABNORMAL/CLOSED) for an order",
  options: {
    ...SEND_OPTIONS,
    "out-refund-no": { type: "string" },
    "refund-amount": { type: "string" },
    "refund-id": { type: "string" },
    "refund-status": { type: "string" },
  },
  maxPositionals: 0,
  help: `wechatpay-sim refund — play WeChat Pay telling the merchant a refund finished

Sends one refund notification (APIv3: REFUND.SUCCESS | REFUND.ABNORMAL | REFUND.CLOSED with an encrypted
resource; --v2: XML whose req_info is AES-256-ECB encrypted under md5(APIv2 key), no sign), prints the request
and WeChat's verdict, and redelivers on WeChat's schedule until acknowledged (see \`pay --help\`).

Usage: wechatpay-sim refund [--out-trade-no NO] [--refund-amount FEN] [options]

Refund options:
  --out-trade-no NO      the refunded order (default: the order paid last in the journal)
  --amount FEN           order total, fen (default: the journal's amount for the order)
  --refund-amount FEN    refunded amount, fen, 1..total (default: the whole total)
  --out-refund-no NO     the merchant's refund number (default: a new SIMR… number)
  --refund-id ID         WeChat's refund id (default: the journal's for this refund, else a new one)
  --refund-status S      SUCCESS (default), ABNORMAL or CLOSED (v2: SUCCESS, CHANGE, REFUNDCLOSE)

${SEND_HELP}

Examples:
  npm run sim -- refund --out-trade-no ORDER123
  npm run sim -- refund --out-trade-no ORDER123 --refund-amount 500 --out-refund-no R1
  npx wechatpay-sim refund --v2 --out-trade-no ORDER123 --no-retry

${HELP_EXIT_CODES}`,
  async run({ values }, io: Io) {
    const settings = sendSettings(values, io);
    if (values["sign-type"] !== undefined) {
      throw new UsageError(
        "--sign-type does not apply: v2 refund notifications carry no sign (req_info is encrypted)",
        "--sign-type",
      );
    }
    checkOrderFlags(values);
    const keys = requireKeys(values, io);
    const { mchid, appid } = merchant(values, keys);
    const outTradeNo = tradeNoFlag(values, "out-trade-no") ?? latestPaidOrder(keys.dir, mchid);
    if (outTradeNo === undefined) {
      throw new UsageError("--out-trade-no is required (the journal holds no paid order to refund)", "--out-trade-no");
    }
    const order = findOrder(keys.dir, mchid, outTradeNo);
    const notes: string[] = [];
    const total = amountFlag(values) ?? order?.amount;
    if (total === undefined) {
      throw new UsageError(`--amount is required: order ${outTradeNo} is not in the simulator's journal`, "--amount");
    }
    const refundAmount =
      intFlag(values, "refund-amount", {
        min: 1,
        max: total,
        what: "a whole number of fen (at most the order total)",
      }) ?? total;
    if (order === undefined) notes.push(`order ${outTradeNo} is unknown to the journal (never paid by the simulator)`);
    else if (order.tradeState === "NOTPAY" || order.tradeState === "CLOSED")
      notes.push(`order ${outTradeNo} is not paid in the journal`);
    const outRefundNo = tradeNoFlag(values, "out-refund-no") ?? newOutRefundNo();
    const previous = findRefund(keys.dir, mchid, outRefundNo);
    const refund: Refund = {
      mchid,
      appid,
      outTradeNo,
      transactionId: stringFlag(values, "transaction-id") ?? order?.transactionId ?? newTransactionId(),
      outRefundNo,
      refundId: stringFlag(values, "refund-id") ?? previous?.refundId ?? newRefundId(),
      total,
      refund: refundAmount,
      status: enumFlag(values, "refund-status", REFUND_STATUSES) ?? "SUCCESS",
      successTime: new Date(),
    };
    const notification =
      settings.api === "v3" ? v3Refund(keys, refund, { signer: settings.signer }) : v2Refund(keys, refund);
    appendJournal(keys.dir, [
      {
        type: "refund",
        at: new Date().toISOString(),
        api: settings.api,
        mchid,
        outTradeNo,
        transactionId: refund.transactionId,
        outRefundNo,
        refundId: refund.refundId,
        total,
        refund: refundAmount,
        status: refund.status,
        successTime: refund.successTime.toISOString(),
        notificationId: notification.id,
      },
    ]);
    if (!settings.json) {
      println(
        io.stdout,
        `Refund ${outRefundNo} (${refund.status}) of order ${outTradeNo}: ${refundAmount} of ${total} fen, ` +
          `refund id ${refund.refundId}, transaction ${refund.transactionId}`,
      );
      for (const note of notes) println(io.stdout, `  note: ${note}`);
      println(io.stdout, "");
    }
    const sent = await deliverAndReport(io, settings, notification);
    if (settings.json) println(io.stdout, JSON.stringify({ command: "refund", notes, ...sent.json }, null, 2));
    return sent.exitCode;
  },
};
