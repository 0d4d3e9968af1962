-- Refund: one refund per (order, out_refund_no).
--
-- "Refund"."outRefundNo" was unique across the deployment, while WeChat makes out_refund_no unique only per merchant.
-- A tenant of a multi-merchant deployment that recorded a refund of its own order under another tenant's refund
-- number (both numbering refunds alike, or on purpose: an APIv2 refund's req_info is encrypted with the tenant's own
-- key) had that tenant's genuine refund answered REFUND_CONFLICT: not recorded, not counted, its stock not restored.
-- The key is now (outTradeNo, outRefundNo): "Order"."outTradeNo" is unique across the deployment, so the pair names
-- one refund of one order, and Refund."outTradeNo" is NOT NULL (orderId becomes null when an order is deleted).
-- Every existing row satisfies it, as out_refund_no alone was unique. The index on outTradeNo alone is dropped: the
-- new index leads with that column. The refund statement itself is application SQL
-- (packages/db/src/repositories/refunds.ts).
DROP INDEX "Refund_outRefundNo_key";
DROP INDEX "Refund_outTradeNo_idx";
CREATE UNIQUE INDEX "Refund_outTradeNo_outRefundNo_key" ON "Refund"("outTradeNo", "outRefundNo");
