-- APIv3 notification ids become `v3:<mchid>:<WeChat's id>` (the merchant whose keys verified the notification): an
-- id was WeChat's envelope id alone, an outside value in a multi-merchant deployment — tenants supply their own
-- key material — so one tenant's notification could take another merchant's id (its row then stood where the
-- genuine notification's belonged, which was answered as a redelivery and never applied). WeChat's id is kept in
-- its own column, which the dashboard's search reads; not unique, as two merchants may carry the same one.
-- Nullable, no default: a metadata-only change (no table rewrite). Rows parsed before keep null: their id is
-- WeChat's id, which the search matches as before.
ALTER TABLE "Notification" ADD COLUMN "wechatId" TEXT;
