-- A partner payment's payer is compared too (DUPLICATE_MISMATCH).
--
-- wpn_apply_payments compared a further report of the order's transaction with the payer openid only for a direct
-- merchant's order: in partner mode Order."payerOpenid" holds APIv3's sub_openid when the payment named one, while
-- APIv2 names the payer under the provider's appid (`openid`), so the one column could not tell a payment reported on
-- both APIs from two reports naming different payers. A partner report of the order's transaction naming another payer
-- than the one recorded was then a plain DUPLICATE (no review), where a direct merchant's was DUPLICATE_MISMATCH
-- (apps/worker/test/apply-payment.test.ts). Both APIs name the payer under the provider's appid — APIv3
-- payer.sp_openid, APIv2 openid —, so the payment recorded on a partner order now keeps that one ("paidSpOpenid",
-- written with the transaction id, as the other paid* facts), and a later report naming another is
-- DUPLICATE_MISMATCH. Not compared when either side does not know it: a report without a payer, and orders paid before
-- this migration (no backfill: a table-wide UPDATE of "Order" would hold every paid order's row lock against the
-- running workers). "payerOpenid" keeps what it held (the sub-merchant's openid when APIv3 names one).
--
-- The column alone: wpn_apply_payments records and compares it as of the next migration,
-- 20261211150000_payment_transaction_owner, which replaces the function once for both changes (the batch's items take a
-- new field, sp_openid; a worker of the previous release sends none: null, not compared, not recorded).

ALTER TABLE "Order" ADD COLUMN "paidSpOpenid" TEXT;
