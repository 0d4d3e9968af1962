import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "@wpn/db";
import type { TestDatabase } from "@wpn/testing";

/** A statement Prisma sent, as its query log reports it. */
export interface SentStatement {
  query: string;
  params: unknown[];
}

/** A node of an `EXPLAIN (FORMAT JSON)` plan: the fields the plan tests read. */
export interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Index Cond"?: string;
  Filter?: string;
  "Parent Relationship"?: string;
  Plans?: PlanNode[];
}

/**
 * A Prisma client on the test database's schema that records every statement it sends in `sent` (its query log), so
 * a test explains exactly what the dashboard's data functions ask PostgreSQL. Empty `sent` before the call under test.
 */
export function recordingPrisma(t: TestDatabase): { prisma: PrismaClient<"query">; sent: SentStatement[] } {
  const sent: SentStatement[] = [];
  const prisma = new PrismaClient({
    adapter: new PrismaPg(t.db.pool, { schema: t.schema }),
    log: [{ emit: "event", level: "query" }],
  });
  prisma.$on("query", (event) => sent.push({ query: event.query, params: JSON.parse(event.params) as unknown[] }));
  return { prisma, sent };
}

/** The plan PostgreSQL chooses for `statement` (EXPLAIN without ANALYZE: nothing is run). */
export async function planOf(t: TestDatabase, statement: SentStatement): Promise<PlanNode> {
  const { rows } = await t.db.pool.query<{ "QUERY PLAN": { Plan: PlanNode }[] }>(
    `EXPLAIN (FORMAT JSON) ${statement.query}`,
    statement.params,
  );
  return rows[0]?.["QUERY PLAN"][0]?.Plan as PlanNode;
}
