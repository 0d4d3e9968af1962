import {
  applyPaymentStatements,
  applyRefundStatement,
  type PaymentFacts,
  type PaymentResult,
  type PrismaClient,
  type RefundFacts,
  type RefundResultRow,
} from "@wpn/db";

/**
 * Where the apply stage commits effects. The production store runs each call as one SQL statement through
 * Prisma (@wpn/db); the benchmark plugs in a statement-by-statement raw `pg` store with the same contract to
 * measure what that single round trip buys.
 */
export interface ApplyStore {
  /**
   * Applies payments with the semantics of applying them one after another in the given order (a later one
   * sees the earlier ones' effects); one result per payment, in input order. The apply stage sends the
   * payments of concurrent jobs here together (PaymentBatcher).
   */
  payments(facts: readonly PaymentFacts[]): Promise<PaymentResult[]>;
  refund(facts: RefundFacts): Promise<RefundResultRow>;
}

export function prismaApplyStore(prisma: PrismaClient): ApplyStore {
  return {
    payments: (facts) => applyPaymentStatements(prisma, facts),
    refund: (facts) => applyRefundStatement(prisma, facts),
  };
}
