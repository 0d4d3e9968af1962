import { DEFAULT_DATABASE_URL } from "@wpn/config";
import { amountFlag, boolFlag, databaseUrl, requireKeys, stringFlag, tradeNoFlag, type Values } from "../args.ts";
import { connect, insertOrders, insertSkus, orderExists, redact } from "../db.ts";
import { type Io, println } from "../io.ts";
import { appendJournal, findOrder } from "../journal.ts";
import type { SimKeys } from "../keys.ts";
import {
  type Notification,
  newOpenid,
  newOutTradeNo,
  newTransactionId,
  type Payment,
  v2Payment,
  v3Payment,
} from "../notifications.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";
import {
  checkOrderFlags,
  deliverAndReport,
  merchant,
  SEND_HELP,
  SEND_OPTIONS,
  type SendSettings,
  sendSettings,
} from "./send.ts";

export const DEFAULT_AMOUNT = 100;
/** SKUs `pay --seed` puts the demo order's two items on. */
export const DEMO_SKUS = [
  { id: "sim-demo-a", name: "Simulator demo item A", stock: 1000 },
  { id: "sim-demo-b", name: "Simulator demo item B", stock: 1000 },
];

export const PAY_OPTIONS = {
  ...SEND_OPTIONS,
  openid: { type: "string" },
  seed: { type: "boolean" },
  "database-url": { type: "string" },
} as const;

export const PAY_ORDER_HELP = `Order options:
  --out-trade-no NO      the merchant's order number (default: a new SIM… number)
  --amount FEN           amount paid, in fen (default: the journal's amount for this order, else ${DEFAULT_AMOUNT})
  --openid ID            payer openid (default: a random oSim… id)
  --seed                 first insert the order (NOTPAY, two items on SKUs sim-demo-a/b) into the database
  --database-url URL     database for --seed (default $DATABASE_URL, else ${DEFAULT_DATABASE_URL})`;

/** Builds the payment from flags + journal; shared with `close --then-pay`. */
export function paymentFromFlags(values: Values, keys: SimKeys): { payment: Payment; notes: string[] } {
  const notes: string[] = [];
  const { mchid, appid } = merchant(values, keys);
  const outTradeNo = tradeNoFlag(values, "out-trade-no") ?? newOutTradeNo();
  const known = findOrder(keys.dir, mchid, outTradeNo);
  const amount = amountFlag(values) ?? known?.amount ?? DEFAULT_AMOUNT;
  let transactionId = stringFlag(values, "transaction-id");
  if (transactionId === undefined && known?.transactionId !== undefined && known.tradeState !== "NOTPAY") {
    transactionId = known.transactionId;
    notes.push(
      `order ${outTradeNo} is already paid in the journal: same transaction ${transactionId}, new notification`,
    );
  }
  return {
    payment: {
      mchid,
      appid,
      outTradeNo,
      transactionId: transactionId ?? newTransactionId(),
      amount,
      openid: stringFlag(values, "openid") ?? known?.openid ?? newOpenid(),
      successTime: new Date(),
    },
    notes,
  };
}

export function paymentNotification(keys: SimKeys, settings: SendSettings, payment: Payment): Notification {
  return settings.api === "v3"
    ? v3Payment(keys, payment, { signer: settings.signer })
    : v2Payment(keys, payment, settings.signType);
}

/** `pay --seed` / `close --seed`: inserts the order the way a merchant's shop would, unless it exists. */
export async function seedOrder(
  url: string,
  payment: Pick<Payment, "outTradeNo" | "mchid" | "appid" | "amount">,
): Promise<string> {
  const client = await connect(url);
  try {
    if (await orderExists(client, payment))
      return `order ${payment.outTradeNo} of merchant ${payment.mchid} already exists in the database: left unchanged`;
    await client.query("BEGIN");
    await insertSkus(client, DEMO_SKUS);
    await insertOrders(client, [
      {
        outTradeNo: payment.outTradeNo,
        mchid: payment.mchid,
        appid: payment.appid,
        amount: payment.amount,
        items: DEMO_SKUS.map((s) => ({ skuId: s.id, quantity: 1 })),
      },
    ]);
    await client.query("COMMIT");
    return `created order ${payment.outTradeNo} (NOTPAY, ${payment.amount} fen, items sim-demo-a ×1, sim-demo-b ×1) in ${redact(url)}`;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    await client.end();
  }
}

/** Records the payment in the journal, delivers it, prints; returns the exit code. */
export async function sendPayment(
  io: Io,
  settings: SendSettings,
  keys: SimKeys,
  payment: Payment,
  notes: string[],
): Promise<number> {
  const notification = paymentNotification(keys, settings, payment);
  appendJournal(keys.dir, [
    {
      type: "pay",
      at: new Date().toISOString(),
      api: settings.api,
      mchid: payment.mchid,
      appid: payment.appid,
      outTradeNo: payment.outTradeNo,
      transactionId: payment.transactionId,
      amount: payment.amount,
      openid: payment.openid,
      successTime: payment.successTime.toISOString(),
      notificationId: notification.id,
    },
  ]);
  if (!settings.json) {
    println(
      io.stdout,
      `Payment of order ${payment.outTradeNo}: ${payment.amount} fen, transaction ${payment.transactionId}, ` +
        `merchant ${payment.mchid}/${payment.appid}, ${settings.api === "v3" ? `APIv3 signed with the ${settings.signer}` : `APIv2 ${settings.signType}`}`,
    );
    for (const note of notes) println(io.stdout, `  note: ${note}`);
    println(io.stdout, "");
  }
  const sent = await deliverAndReport(io, settings, notification);
  if (settings.json) println(io.stdout, JSON.stringify({ command: "pay", notes, ...sent.json }, null, 2));
  return sent.exitCode;
}

export const payCommand: Command = {
  name: "pay",
  summary: "send a payment notification (TRANSACTION.SUCCESS) for an order",
  options: PAY_OPTIONS,
  maxPositionals: 0,
  help: `wechatpay-sim pay — play WeChat Pay telling the merchant an order was paid

Sends one signed notification (APIv3: TRANSACTION.SUCCESS, resource encrypted with AEAD_AES_256_GCM;
--v2: XML signed with MD5 or HMAC-SHA256), prints the request and WeChat's verdict of the answer, and
redelivers on WeChat's schedule until acknowledged (v3: 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h;
v2: 15s 15s 30s 3m 30m 30m 30m 30m 60m). Each redelivery is re-signed (fresh timestamp and nonce) and keeps
the notification id. The payment is recorded in the journal of the keys folder (\`serve\` answers order
queries from it).

Usage: wechatpay-sim pay [--out-trade-no NO] [--amount FEN] [options]

${PAY_ORDER_HELP}

${SEND_HELP}

Examples:
  npm run sim -- pay --out-trade-no ORDER123 --amount 2500
  npm run sim -- pay --seed --out-trade-no DEMO1 --amount 990
  npx wechatpay-sim pay --v2 --sign-type HMAC-SHA256 --out-trade-no ORDER123 --time-scale 0.01

${HELP_EXIT_CODES}`,
  async run({ values }, io) {
    const settings = sendSettings(values, io);
    checkOrderFlags(values);
    const keys = requireKeys(values, io);
    const { payment, notes } = paymentFromFlags(values, keys);
    if (boolFlag(values, "seed")) {
      const url = databaseUrl(values, io) ?? DEFAULT_DATABASE_URL;
      notes.push(await seedOrder(url, payment));
    } else if (values["database-url"] !== undefined) {
      notes.push("--database-url is only used with --seed");
    }
    return sendPayment(io, settings, keys, payment, notes);
  },
};
