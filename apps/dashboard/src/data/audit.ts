import type { Prisma, PrismaClient } from "@wpn/db";

/** Prisma client or an interactive transaction's client: an audit row can join the action's own transaction. */
export type DbClient = PrismaClient | Prisma.TransactionClient;

export interface AuditEntry {
  actor: string;
  role: string;
  /** Stable dotted name: `login`, `logout`, `dead_letter.replay`, `queues.pause`, … */
  action: string;
  /** What was acted on: a notification id, a queue name, `notify.apply/123`. */
  target?: string;
  detail?: Prisma.InputJsonValue;
}

/**
 * Writes one AuditLog row and answers its id. `at` is set here rather than by the column default: the default is
 * CURRENT_TIMESTAMP in the database session's time zone, while every other timestamp is written as UTC.
 */
export async function recordAudit(db: DbClient, entry: AuditEntry, at: Date = new Date()): Promise<bigint> {
  const row = await db.auditLog.create({
    data: {
      at,
      actor: entry.actor,
      role: entry.role,
      action: entry.action,
      target: entry.target ?? null,
      ...(entry.detail === undefined ? {} : { detail: entry.detail }),
    },
    select: { id: true },
  });
  return row.id;
}

/** Replaces the detail of a row written by `recordAudit` before the action ran, once its outcome is known. */
export async function recordAuditOutcome(db: DbClient, id: bigint, detail: Prisma.InputJsonValue): Promise<void> {
  await db.auditLog.update({ where: { id }, data: { detail } });
}
