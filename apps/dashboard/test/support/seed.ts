import { randomBytes } from "node:crypto";
import type { Prisma, PrismaClient } from "@wpn/db";

export const randomId = (prefix: string) => `${prefix}${randomBytes(6).toString("hex")}`;

/** A Notification row as the worker would leave it; plain Prisma writes, no pipeline involved. */
export async function seedNotification(
  prisma: PrismaClient,
  data: Partial<Prisma.NotificationUncheckedCreateInput> = {},
): Promise<string> {
  const id = data.id ?? randomId("n-");
  await prisma.notification.create({
    data: {
      id,
      apiVersion: "v3",
      mchid: "1900000109",
      eventType: "TRANSACTION.SUCCESS",
      receivedAt: new Date(),
      headers: { serial: "PUB_KEY_ID_0114", timestamp: "1700000000", nonce: "n0nce", requestId: "req-1" },
      body: JSON.stringify({ id, resource: { ciphertext: "ENCRYPTED" } }),
      status: "APPLIED",
      attempts: 1,
      ...data,
    },
  });
  return id;
}

export async function seedOrder(
  prisma: PrismaClient,
  data: Partial<Prisma.OrderUncheckedCreateInput> = {},
): Promise<string> {
  const order = await prisma.order.create({
    data: {
      outTradeNo: data.outTradeNo ?? randomId("OTN"),
      mchid: "1900000109",
      appid: "wxd678efh567hg6787",
      amountTotal: 1999,
      ...data,
    },
  });
  return order.id;
}
