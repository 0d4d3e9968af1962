-- The dashboard's sub-merchant filter (partner mode: WHERE "subMchid" = $1 ORDER BY "receivedAt" DESC, id DESC)
-- would read the whole table, as the merchant filter did before 20261201141000; this index hands it the
-- sub-merchant's rows newest first (apps/dashboard/test/search-plans.test.ts). Rows of direct merchants have no
-- sub-merchant (NULL), which no search asks for.
-- CONCURRENTLY and alone, IF NOT EXISTS: see 20261201140000_notification_out_refund_no_index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "Notification_subMchid_receivedAt_idx" ON "Notification"("subMchid", "receivedAt");
