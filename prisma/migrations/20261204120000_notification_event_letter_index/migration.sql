-- `npm run db:prune` keeps a settled notification whose apply job's dead letter still waits in notify.dead: its
-- latest letter event (DEAD_LETTERED, REPLAYED, REPLAY_FAILED) tells, read once per candidate row. Only those events,
-- a few per dead letter, are in this index (the timeline's other kinds, ~3 per notification, are not): the read is a
-- probe of a small index that finds nothing for nearly every row, where the ("notificationId", at) index has the prune
-- read every event of every candidate row from the table. Measured on a loaded 2-CPU host, a 5,000-row prune batch
-- (2.1 events per notification, 1 % with a letter): server execution +5–6 % with this index, +7–21 % without it.
-- CONCURRENTLY and alone, IF NOT EXISTS: see 20261201140000_notification_out_refund_no_index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "NotificationEvent_notificationId_id_idx" ON "NotificationEvent"("notificationId", id) WHERE kind IN ('DEAD_LETTERED', 'REPLAYED', 'REPLAY_FAILED');
