import type { ParsedNotification, PrismaClient, UpsertResult } from "@wpn/db";

/**
 * The single-notification upsert statement as it was before `upsertParsedNotifications` existed (verbatim but
 * for the name, a null event: no entry but RECEIVED, the subMchid column of migration 20261202130000 and the wechatId
 * column of migration 20261203140000, kept like the business keys, and a DEAD row whose apply-stage letter is
 * outstanding kept DEAD with a REDELIVERED entry, as since fcbe379 and its narrowing to the apply stage, a new row
 * that is a resend of the row under its other id form created DUPLICATE with a DUPLICATE entry naming it, a row found
 * DUPLICATE as a resend answered with the row it names, and no entry for a row found in a final status other than the
 * one asked), kept as the oracle the batch statement is compared with: same inputs, same rows, same timeline, same
 * results. A batch is compared with these statements run one after another in its order (both id forms of a
 * notification in one batch: the later is the resend of the earlier). One after another, they need no lock: the batch
 * statement reads the twin under its notification's lock (migration 20261204100000), with a snapshot taken once it
 * holds it, which reads the same rows here and makes concurrent statements decide as these do in some order.
 */
export async function referenceUpsert(prisma: PrismaClient, n: ParsedNotification): Promise<UpsertResult> {
  const rows = await prisma.$queryRaw<(UpsertResult & { duplicateOf: string | null })[]>`
    WITH input AS (
      SELECT ${n.id}::text AS id,
             (to_timestamp(${n.receivedAt}::bigint / 1000.0) AT TIME ZONE 'UTC')::timestamp(3) AS received_at,
             (now() AT TIME ZONE 'UTC')::timestamp(3) AS at,
             ${n.event?.kind ?? null}::text AS kind, ${JSON.stringify(n.event?.detail ?? {})}::jsonb AS detail
    ),
    prior AS (
      SELECT status::text AS status FROM "Notification" WHERE id = (SELECT id FROM input)
    ),
    reopened AS (
      SELECT (SELECT status FROM prior) = 'DEAD' AND COALESCE((
        SELECT e.kind FROM "NotificationEvent" e
        WHERE e."notificationId" = (SELECT id FROM input)
          AND ((e.kind = 'DEAD_LETTERED' AND e.detail->>'stage' = 'notify.apply')
            OR (e.kind = 'REPLAYED' AND e.detail->>'queue' = 'notify.apply'))
        ORDER BY e.id DESC LIMIT 1
      ), '') <> 'DEAD_LETTERED' AS yes
    ),
    twin AS (
      SELECT c.id AS of FROM "Notification" c
      WHERE c.id = ${n.otherFormId} AND ${n.apiVersion} = 'v3' AND ${n.status} = 'PROCESSING' AND NOT EXISTS (SELECT 1 FROM prior)
        AND c."apiVersion" = 'v3' AND c.mchid = ${n.mchid}
        AND c.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED', 'PROCESSING')
    ),
    resent AS (
      SELECT e.detail->>'duplicateOf' AS of FROM "NotificationEvent" e
      WHERE (SELECT status FROM prior) = 'DUPLICATE' AND e."notificationId" = (SELECT id FROM input)
        AND e.kind = 'DUPLICATE' AND e.detail->>'duplicateOf' IS NOT NULL
      ORDER BY e.id DESC LIMIT 1
    ),
    up AS (
      INSERT INTO "Notification" AS t
        (id, "apiVersion", "wechatId", mchid, "eventType", "receivedAt", headers, body, status,
         "outTradeNo", "transactionId", "outRefundNo", "subMchid", "errorCode", "lastError", "updatedAt")
      SELECT i.id, ${n.apiVersion}, ${n.wechatId}, ${n.mchid}, ${n.eventType}, i.received_at, ${n.headers === null ? null : JSON.stringify(n.headers)}::jsonb,
             ${n.body}, CASE WHEN EXISTS (SELECT 1 FROM twin) THEN 'DUPLICATE' ELSE ${n.status}::"NotificationStatus" END, ${n.outTradeNo}, ${n.transactionId}, ${n.outRefundNo},
             ${n.subMchid}, ${n.errorCode}, ${n.lastError}, i.at
      FROM input i
      ON CONFLICT (id) DO UPDATE SET
        status = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
          OR (t.status = 'DEAD' AND NOT COALESCE((SELECT yes FROM reopened), false)) THEN t.status
          WHEN EXCLUDED.status = 'DUPLICATE' THEN 'PROCESSING' ELSE EXCLUDED.status END,
        "eventType" = EXCLUDED."eventType",
        "wechatId" = COALESCE(EXCLUDED."wechatId", t."wechatId"),
        "outTradeNo" = COALESCE(EXCLUDED."outTradeNo", t."outTradeNo"),
        "transactionId" = COALESCE(EXCLUDED."transactionId", t."transactionId"),
        "outRefundNo" = COALESCE(EXCLUDED."outRefundNo", t."outRefundNo"),
        "subMchid" = COALESCE(EXCLUDED."subMchid", t."subMchid"),
        "errorCode" = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
          OR (t.status = 'DEAD' AND NOT COALESCE((SELECT yes FROM reopened), false)) THEN t."errorCode" ELSE EXCLUDED."errorCode" END,
        "lastError" = CASE WHEN t.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
          OR (t.status = 'DEAD' AND NOT COALESCE((SELECT yes FROM reopened), false)) THEN t."lastError" ELSE EXCLUDED."lastError" END,
        "updatedAt" = EXCLUDED."updatedAt"
      RETURNING t.status::text AS status, (t.xmax = 0) AS inserted
    ),
    ev AS (
      INSERT INTO "NotificationEvent" ("notificationId", at, kind, detail)
      SELECT i.id, i.received_at, 'RECEIVED', jsonb_build_object('apiVersion', ${n.apiVersion}::text) || i.detail
      FROM input i, up WHERE up.inserted
      UNION ALL
      SELECT i.id, i.at, CASE WHEN up.status = 'DEAD' THEN 'REDELIVERED' ELSE i.kind END, i.detail
      FROM input i, up
      WHERE i.kind IS NOT NULL AND COALESCE((SELECT status FROM prior), '') NOT IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED')
        AND NOT (up.inserted AND i.kind = 'PARSED')
        AND NOT (NOT up.inserted AND up.status IN ('APPLIED', 'DUPLICATE', 'REVIEW', 'IGNORED') AND up.status <> ${n.status})
      UNION ALL
      SELECT i.id, i.at, 'DUPLICATE', i.detail || jsonb_build_object('duplicateOf', twin.of)
      FROM input i, up, twin WHERE up.inserted
    )
    SELECT status, inserted,
           CASE WHEN status = 'DUPLICATE' THEN COALESCE((SELECT of FROM twin), (SELECT of FROM resent)) END AS "duplicateOf"
    FROM up`;
  const row = rows[0];
  if (!row) throw new Error(`upsert of notification ${n.id} returned no row`);
  const { status, inserted, duplicateOf } = row;
  return duplicateOf === null ? { status, inserted } : { status, inserted, duplicateOf };
}
