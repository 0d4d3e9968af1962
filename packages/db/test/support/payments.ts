import type { PaymentFacts, PrismaClient } from "@wpn/db";

/** The merchant and app every payment test's orders belong to. */
export const MCHID = "1900000109";
export const APPID = "wxd678efh567hg6787";

/** A notification row waiting to be applied, as the parse stage leaves it. */
export async function insertNotification(
  prisma: PrismaClient,
  id: string,
  eventType = "TRANSACTION.SUCCESS",
): Promise<void> {
  await prisma.$executeRaw`INSERT INTO "Notification" (id, "eventType", "receivedAt", body, status)
    VALUES (${id}, ${eventType}, now() AT TIME ZONE 'UTC', '{}', 'PROCESSING')`;
}

/** The facts of a successful payment of 300 fen for `outTradeNo` (transaction `4200-<outTradeNo>`). */
export function paymentFacts(nid: string, outTradeNo: string, overrides: Partial<PaymentFacts> = {}): PaymentFacts {
  return {
    notificationId: nid,
    outTradeNo,
    transactionId: `4200-${outTradeNo}`,
    mchid: MCHID,
    appid: APPID,
    subMchid: null,
    subAppid: null,
    total: 300,
    currency: "CNY",
    payerOpenid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    payerSpOpenid: null,
    paidAt: Date.UTC(2026, 10, 30, 3, 0, 0),
    ...overrides,
  };
}
