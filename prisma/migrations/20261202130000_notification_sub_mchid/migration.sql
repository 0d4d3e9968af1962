-- Partner (服务商) mode: the sub-merchant a notification names, recorded by the parse stage from the decrypted
-- resource. "mchid" is the service provider whose keys authenticated the notification; without the sub-merchant,
-- a notification the worker sent to REVIEW MCHID_MISMATCH (sub-merchant A's payment naming sub-merchant B's
-- out_trade_no) recorded nowhere readable which sub-merchant it was, though WeChat's partner APIs a human uses to
-- query or refund the transaction need it, and the dashboard could not tell sub-merchants apart before the worker
-- applied a notification. Nullable, no default: a metadata-only change (no table rewrite); rows parsed before keep
-- null (the dashboard then compares merchants only, as before).
ALTER TABLE "Notification" ADD COLUMN "subMchid" TEXT;
