-- The dashboard finds an APIv3 notification by WeChat's id (free text or the notification-id field), which since
-- 20261203140000 is its own column: without an index every such search read the whole table.
-- CONCURRENTLY and alone, IF NOT EXISTS: see 20261201140000_notification_out_refund_no_index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "Notification_wechatId_idx" ON "Notification"("wechatId");
