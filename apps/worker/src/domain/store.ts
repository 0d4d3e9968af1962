import {
  applyPaymentStatement,
  applyRefundStatement,
  type PaymentFacts,
  type PaymentResult,
  type PrismaClient,
  type RefundFacts,
  type RefundResultRow,
} from "@wpn/db";

/**
 * Where the apply stage commits effects. The production store runs each effect as one SQL statement through
 * Prisma (@wpn/db); the benchmark plugs in a statement-by-statement raw `pg` store with the same contract to
 * measure what that single round trip buys.
 */
export interface ApplyStore {
  payment(facts: PaymentFacts): Promise<PaymentResult>;
  refund(facts: RefundFacts): Promise<RefundResultRow>;
}

export function prismaApplyStore(prisma: PrismaClient): ApplyStore {
  return {
    payment: (facts) => applyPaymentStatement(prisma, facts),
    refund: (facts) => applyRefundStatement(prisma, facts),
  };
}
