-- A merchant's keys are 32 bytes: the APIv3 key is the AES-256-GCM key, the APIv2 key WeChat's 32-character sign
-- key — what the environment's keys are checked for at start. A key pasted into a row with a trailing newline or
-- space was stored, and every notification of that merchant then failed in the workers (KEY_INVALID); now such a
-- row is refused when written, with the constraint's name in the error.
-- NOT VALID: rows stored before are not checked, so a deploy cannot fail on one; an UPDATE of such a row must fix
-- its keys. The workers retry a notification whose key does not fit within WORKER_UNKNOWN_ORDER_RETRY_SECONDS.
ALTER TABLE "Merchant" ADD CONSTRAINT "Merchant_apiV3Key_length_check" CHECK (octet_length("apiV3Key") = 32) NOT VALID;
ALTER TABLE "Merchant" ADD CONSTRAINT "Merchant_apiV3KeyPrevious_length_check" CHECK (octet_length("apiV3KeyPrevious") = 32) NOT VALID;
ALTER TABLE "Merchant" ADD CONSTRAINT "Merchant_apiV2Key_length_check" CHECK (octet_length("apiV2Key") = 32) NOT VALID;
ALTER TABLE "Merchant" ADD CONSTRAINT "Merchant_apiV2KeyPrevious_length_check" CHECK (octet_length("apiV2KeyPrevious") = 32) NOT VALID;
