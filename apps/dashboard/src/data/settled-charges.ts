import { Prisma } from "@wpn/db";

/**
 * Whether the second charge `transactionId` of the order `orderId` (SQL expressions of the enclosing statement) is
 * refunded in full: its successful DUPLICATE_PAYMENT_REFUNDED refunds add up to the charge's total, the amount.total
 * they report (the largest, should two disagree). That is the rule by which the refund statement closes the order's
 * DUPLICATE_PAYMENT review (packages/db/src/repositories/refunds.ts): such a charge is settled, and /reviews lists
 * neither its DUPLICATE_PAYMENT notification nor its refunds.
 *
 * Always true or false (false for a null order or transaction): the condition is negated by its callers, where a null
 * would drop the row. Evaluated per row through Refund's key (orderId, outRefundNo), which leads with orderId, rather
 * than by reading the settled charges beforehand and sending them back as parameters: a systematic double charge
 * makes them as many as its orders, and two parameters per charge failed every statement past 32,767 charges.
 */
export function refundedInFull(orderId: Prisma.Sql, transactionId: Prisma.Sql): Prisma.Sql {
  return Prisma.sql`COALESCE((
    SELECT sum(charge_refund."amountRefund") >= max(charge_refund."amountTotal")
      FROM "Refund" charge_refund
     WHERE charge_refund."orderId" = ${orderId} AND charge_refund."transactionId" = ${transactionId}
       AND charge_refund."reviewReason" = 'DUPLICATE_PAYMENT_REFUNDED' AND charge_refund.status = 'SUCCESS'), false)`;
}
