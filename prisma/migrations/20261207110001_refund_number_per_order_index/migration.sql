-- A refund is (orderId, outRefundNo): one refund number of one order. The key was (outTradeNo, outRefundNo)
-- (20261201130000_refund_per_order), which named one order only while out_trade_no was unique across the deployment;
-- two merchants' orders "1001" may now each have a refund "RF-1" (20261207110000_order_number_per_merchant_index).
-- The refund statement records a refund only on the order it found (orderId is never null when it writes), so the
-- key holds for every row it writes. A refund whose order was deleted keeps its row with orderId null (ON DELETE SET
-- NULL); NULLs are distinct here, so such rows never collide with each other nor with a later order's refunds.
-- Every existing row satisfies it: orderId determines outTradeNo, and (outTradeNo, outRefundNo) was unique.
-- CONCURRENTLY and alone, IF NOT EXISTS: see 20261201140000_notification_out_refund_no_index.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Refund_orderId_outRefundNo_key" ON "Refund"("orderId", "outRefundNo");
