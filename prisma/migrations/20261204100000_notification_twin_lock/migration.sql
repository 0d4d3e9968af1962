-- wpn_notification_twins: the parse statement's twin check waits for a concurrent parse of the notification's other
-- id form and sees its row.
--
-- During a rolling deploy one WeChat notification can be queued under both its ids: WeChat's envelope id alone (an
-- ingress from before the `v3:<mchid>:<envelope id>` ids) and `v3:<mchid>:<envelope id>`. The parse statement
-- (upsertParsedNotifications, packages/db/src/repositories/notifications.ts) creates the later form DUPLICATE of the
-- earlier one when the earlier one's row is settled or PROCESSING. It read that row as of its own snapshot, taken when
-- the statement began: two workers parsing the two forms at the same instant each saw no row under the other id, both
-- rows were created PROCESSING and both applied — a review verdict (DUPLICATE_PAYMENT, TRANSACTION_CONFLICT,
-- REFUND_ID_CONFLICT, REFUND_CONFLICT) reached and published twice.
--
-- Now the statement reads those rows through this function, for the rows it checks (new APIv3 rows asked PROCESSING).
-- The function first takes a transaction-scoped advisory lock per such row's notification — keyed on its pair of ids,
-- the same from either form, i.e. on (merchant, WeChat's id) — in key order (two batches sharing notifications take
-- them in one order and cannot deadlock), then reads the rows. A VOLATILE function's query takes a snapshot of its own when it starts, in READ
-- COMMITTED after the locks are held: a parse of the other form that held the lock has committed by then and its row
-- is seen. So parses of one notification's two forms decide one after another, as the single statements run in order
-- do. The locks are released when the statement's transaction ends (commit, rollback, or the connection's end): none
-- outlives it, none expires. An unrelated notification never waits (another key), nor another merchant's notification
-- carrying the same WeChat id (another pair).
--
-- `ids` and `other_ids` pair up by position: a row's id and its other form's (null: APIv2, no lock).
CREATE FUNCTION wpn_notification_twins(ids text[], other_ids text[])
RETURNS TABLE (out_id text, out_api_version text, out_mchid text, out_status text)
LANGUAGE plpgsql
VOLATILE
AS $wpn$
BEGIN
  -- Ids never hold a newline (@wpn/queue jobs/ids.ts): the pair's text is the same from either form and no other's.
  PERFORM pg_advisory_xact_lock(k.key) FROM (
    SELECT DISTINCT hashtextextended(least(p.id, p.other) || E'\n' || greatest(p.id, p.other), 0) AS key
    FROM unnest(ids, other_ids) AS p(id, other)
    WHERE p.other IS NOT NULL
    ORDER BY 1
  ) k;
  RETURN QUERY
    SELECT n.id, n."apiVersion", n.mchid, n.status::text FROM "Notification" n WHERE n.id = ANY(other_ids);
END
$wpn$;

-- Whoever may apply payments may parse: a deployment that revoked EXECUTE on wpn_apply_payments from PUBLIC and
-- granted it to its worker role gets the same grants on this function (without them its workers could parse nothing).
-- None recorded (NULL) means the defaults, which this function has too.
DO $acl$
DECLARE
  saved aclitem[];
  g record;
BEGIN
  SELECT proacl INTO saved FROM pg_proc WHERE oid = 'wpn_apply_payments(json)'::regprocedure;
  IF saved IS NOT NULL THEN
    REVOKE ALL ON FUNCTION wpn_notification_twins(text[], text[]) FROM PUBLIC;
    FOR g IN SELECT DISTINCT grantee FROM aclexplode(saved) WHERE privilege_type = 'EXECUTE' LOOP
      IF g.grantee = 0 THEN
        GRANT EXECUTE ON FUNCTION wpn_notification_twins(text[], text[]) TO PUBLIC;
      ELSE
        EXECUTE format('GRANT EXECUTE ON FUNCTION wpn_notification_twins(text[], text[]) TO %s', g.grantee::regrole);
      END IF;
    END LOOP;
  END IF;
END
$acl$;
