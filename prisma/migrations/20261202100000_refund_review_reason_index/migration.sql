-- The dashboard's review page lists the refunds recorded but not counted (reviewReason set, e.g.
-- REFUND_AMOUNT_MISMATCH) next to the orders in PAYMENT_REVIEW; they are few among all refunds, and this index hands
-- the page those rows without reading the table (its NULLs, every counted refund, sort apart from them).
-- CONCURRENTLY and alone, IF NOT EXISTS: see 20261201140000_notification_out_refund_no_index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "Refund_reviewReason_updatedAt_idx" ON "Refund"("reviewReason", "updatedAt");
