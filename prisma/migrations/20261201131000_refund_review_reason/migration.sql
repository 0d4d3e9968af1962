-- Refund."reviewReason": a refund recorded but not counted.
--
-- Nothing compared a refund's amounts with its order: partial refunds of 600 + 600 + 900 on a 1 000 fen order were
-- all applied (refundedTotal 2 100, the order REFUND and its stock restored at the second), a refund naming an order
-- total of 99 999 was applied, and refundedTotal + a refund beyond int4 failed the statement (DB_DATA, dead letter).
-- Such a refund (REFUND_AMOUNT_MISMATCH) is now recorded as WeChat reported it — the money left WeChat — with this
-- column set, and the order's refundedTotal, status and stock are left alone; Order."refundedTotal" is the sum of the
-- SUCCESS refunds whose reviewReason is null. Existing rows keep null: they were all counted. The refund statement
-- itself is application SQL (packages/db/src/repositories/refunds.ts).
ALTER TABLE "Refund" ADD COLUMN "reviewReason" TEXT;
